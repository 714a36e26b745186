import assert from "node:assert/strict";
import fc from "fast-check";
import {
  formatCidr,
  formatIPv4,
  FreeAddresses,
  nextFreeSubnet,
  overlaps,
  parseCidr,
  parseIPv4,
  type Subnet,
  subnetProblem,
} from "./ipam.ts";

Deno.test("IPv4 addresses and CIDRs parse and print back", () => {
  assert.equal(parseIPv4("127.1.0.2"), 127 * 2 ** 24 + 65536 + 2);
  assert.equal(formatIPv4(parseIPv4("255.255.255.255")!), "255.255.255.255");
  for (const bad of ["127.1.0", "127.1.0.256", "127.01.0.1", "a.b.c.d", "127.1.0.1.5", ""]) {
    assert.equal(parseIPv4(bad), undefined, bad);
  }
  assert.deepEqual(parseCidr("127.10.0.0/16"), { base: parseIPv4("127.10.0.0"), prefix: 16 });
  assert.equal(parseCidr("127.10.0.1/16"), undefined, "host bits set");
  assert.equal(parseCidr("127.10.0.0"), undefined, "no prefix");
  assert.equal(parseCidr("127.10.0.0/33"), undefined);
  fc.assert(fc.property(fc.nat({ max: 2 ** 32 - 1 }), (n) => parseIPv4(formatIPv4(n)) === n));
});

Deno.test("a requested subnet must be loopback, outside 127.0.0.0/16, and free", () => {
  assert.equal(subnetProblem("127.10.0.0/16"), undefined);
  assert.equal(subnetProblem("127.200.3.0/24"), undefined);
  assert.equal(
    subnetProblem("10.0.9.0/24"),
    "invalid subnet 10.0.9.0/24: Shoal networks live in loopback space, so the subnet must be " +
      "inside 127.0.0.0/8 (for example 127.10.0.0/16)",
  );
  assert.match(subnetProblem("127.0.5.0/24")!, /overlaps 127\.0\.0\.0\/16, which is reserved/);
  assert.match(subnetProblem("127.0.0.0/8")!, /overlaps 127\.0\.0\.0\/16/);
  assert.match(
    subnetProblem("127.10.0.1/16")!,
    /host bits are set; did you mean 127\.10\.0\.0\/16/,
  );
  assert.match(subnetProblem("nonsense")!, /must be an IPv4 CIDR/);
  assert.match(subnetProblem("127.10.0.0/31")!, /leaves no address/);
  assert.equal(
    subnetProblem("127.10.1.0/24", ["127.10.0.0/16"]),
    "invalid subnet 127.10.1.0/24: it overlaps 127.10.0.0/16, the subnet of another network",
  );
});

Deno.test("automatic subnets are the lowest free /16 from 127.1.0.0, around explicit ones", () => {
  const s = (c: string) => parseCidr(c)!;
  assert.equal(formatCidr(nextFreeSubnet([])!), "127.1.0.0/16");
  assert.equal(formatCidr(nextFreeSubnet([s("127.1.0.0/16")])!), "127.2.0.0/16");
  // A small explicit subnet inside 127.1/16 makes that whole /16 unusable for automatic ones.
  assert.equal(formatCidr(nextFreeSubnet([s("127.1.7.0/24")])!), "127.2.0.0/16");
  const all: Subnet[] = [];
  for (let i = 1; i < 256; i++) all.push(s(`127.${i}.0.0/16`));
  assert.equal(nextFreeSubnet(all), undefined, "loopback holds 255 automatic networks");
  assert.equal(formatCidr(nextFreeSubnet(all.slice(0, 254))!), "127.255.0.0/16");
});

Deno.test("free addresses skip the network, gateway and broadcast addresses and what is taken", () => {
  const taken = new Set(["127.20.0.3"]);
  const free = new FreeAddresses(parseCidr("127.20.0.0/29")!, (a) => taken.has(a));
  const got: string[] = [];
  for (let a = free.next(); a !== undefined; a = free.next()) got.push(a);
  // .0 network, .1 gateway, .3 taken, .7 broadcast.
  assert.deepEqual(got, ["127.20.0.2", "127.20.0.4", "127.20.0.5", "127.20.0.6"]);
});

Deno.test("overlap is symmetric and agrees with address membership", () => {
  const arb = fc.record({
    base: fc.integer({ min: 0, max: 255 }),
    prefix: fc.integer({ min: 20, max: 30 }),
  }).map(({ base, prefix }) => {
    const size = 2 ** (32 - prefix);
    const ip = parseIPv4("127.5.0.0")! + base * 64;
    return { base: ip - ip % size, prefix };
  });
  fc.assert(fc.property(arb, arb, (a, b) => {
    assert.equal(overlaps(a, b), overlaps(b, a));
    const shares = a.base <= b.base ? b.base < a.base + 2 ** (32 - a.prefix) : a.base <
      b.base + 2 ** (32 - b.prefix);
    assert.equal(overlaps(a, b), shares);
  }));
});
