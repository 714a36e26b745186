import { testEventLog } from "./_log_contract.ts";
import { EventCodec, MemoryStructureStore } from "./codec.ts";
import { MemoryLog } from "./log.ts";

const store = new MemoryStructureStore();

testEventLog("MemoryLog", () => new MemoryLog({ codec: new EventCodec({ store }) }), {
  // A fresh codec on the same store: the bytes decode as after a restart.
  decode: (bytes) => new EventCodec({ store }).decodeBatch(bytes),
});

testEventLog("MemoryLog (inline encoding)", () => new MemoryLog({ codec: new EventCodec() }), {
  decode: (bytes) => new EventCodec().decodeBatch(bytes),
});
