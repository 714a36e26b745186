/**
 * Reading /proc: the socket tables, and which task's process listens on or holds a socket.
 */
import assert from "node:assert/strict";
import {
  decodeProcAddr,
  listeningPortsByTask,
  parseProcNet,
  readTcpSockets,
  TaskProcesses,
  TCP_LISTEN,
} from "./proc_net.ts";

const SAMPLE =
  `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0B00057F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000 100 0 0 10 0
   1: 0100007F:D431 0B00057F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000 20 4 30 10 -1
   2: garbage
`;

Deno.test("/proc/net/tcp lines decode to addresses, ports, states and inodes", () => {
  const sockets = parseProcNet(SAMPLE);
  assert.deepEqual(sockets, [
    {
      localAddr: "127.5.0.11",
      localPort: 8080,
      remoteAddr: "0.0.0.0",
      remotePort: 0,
      state: TCP_LISTEN,
      uid: 0,
      inode: 4242,
    },
    {
      localAddr: "127.0.0.1",
      localPort: 54321,
      remoteAddr: "127.5.0.11",
      remotePort: 8080,
      state: 1,
      uid: 1000,
      inode: 4343,
    },
  ]);
  assert.equal(decodeProcAddr("00000000000000000000000000000000"), "::");
  assert.equal(decodeProcAddr("0000000000000000FFFF00000B00057F"), "127.5.0.11");
  assert.equal(decodeProcAddr("00000000000000000000000001000000"), "::1");
});

Deno.test("a task process listening on every address is found by its pid; one on its own address by the address", async () => {
  if (Deno.build.os !== "linux") return;
  const code = `
    const l = Deno.listen({ hostname: Deno.args[0], port: 0 });
    console.log(l.addr.port);
    for await (const c of l) c.close();`;
  const spawn = (host: string, taskId: string) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", code, host],
      env: { SHOAL_TASK_ID: taskId },
      stdout: "piped",
    }).spawn();
    return child;
  };
  const firstLine = async (child: Deno.ChildProcess) => {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("\n")) out += (await reader.read()).value ?? "";
    reader.releaseLock();
    return Number(out.trim());
  };
  const wild = spawn("0.0.0.0", "taskwild");
  const own = spawn("127.5.0.77", "taskown");
  try {
    const wildPort = await firstLine(wild);
    const ownPort = await firstLine(own);
    const procs = new TaskProcesses();
    const found = await listeningPortsByTask(
      await readTcpSockets(),
      [{ id: "taskwild", addrs: ["127.5.0.76"] }, { id: "taskown", addrs: ["127.5.0.77"] }, {
        id: "idle",
        addrs: ["127.5.0.78"],
      }],
      await procs.refresh(),
      (pid) => procs.socketInodes(pid),
    );
    assert.deepEqual(found.get("taskwild"), [wildPort]);
    assert.deepEqual(found.get("taskown"), [ownPort]);
    assert.equal(found.has("idle"), false);
    // The listening socket's inode leads back to its task.
    const listening = (await readTcpSockets()).find((s) =>
      s.state === TCP_LISTEN && s.localPort === wildPort
    )!;
    assert.equal(await procs.taskHolding(listening.inode), "taskwild");
    assert.equal(await procs.taskHolding(1), undefined);
  } finally {
    for (const c of [wild, own]) {
      c.kill("SIGKILL");
      await c.status;
      await c.stdout.cancel().catch(() => {});
    }
  }
});
