// choir's HMAC-SHA-256 (transports/hmac_sha256.ts) against node:crypto's, on keys and messages of every
// length around the block boundaries, and RFC 4231's test vectors.
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { HmacSha256, sha256 } from "../../transports/hmac_sha256.ts";
import { fromHex, toHex } from "../../transports/proof.ts";

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 131 + seed * 7 + (i >> 3)) & 0xff;
  return out;
}

Deno.test("sha256 equals node:crypto's for every length 0..300 and a few large ones", () => {
  for (const n of [...Array.from({ length: 301 }, (_, i) => i), 1000, 4095, 4096, 65_537]) {
    const data = bytes(n, n);
    assertEquals(toHex(sha256(data)), createHash("sha256").update(data).digest("hex"), `length ${n}`);
  }
});

Deno.test("HmacSha256 equals node:crypto's HMAC for keys 0..130 bytes and messages 0..200 bytes", () => {
  for (const keyLen of [0, 1, 16, 32, 63, 64, 65, 100, 130]) {
    const key = bytes(keyLen, 99);
    const h = new HmacSha256(key);
    for (let n = 0; n <= 200; n++) {
      const data = bytes(n, keyLen);
      // The same key object signs again and again, as a session does.
      assertEquals(
        toHex(h.mac(data)),
        createHmac("sha256", key).update(data).digest("hex"),
        `${keyLen}/${n}`,
      );
    }
  }
});

Deno.test("HmacSha256 of large messages equals node:crypto's, before and after its native path loads", async () => {
  const key = bytes(32, 7);
  const h = new HmacSha256(key);
  for (const round of ["first (this file's hash)", "after node:crypto loaded"]) {
    for (const n of [4095, 4096, 20_000, 65_537]) {
      const data = bytes(n, n);
      assertEquals(
        toHex(h.mac(data)),
        createHmac("sha256", key).update(data).digest("hex"),
        `${round}: ${n}`,
      );
    }
    // The first large message started loading node:crypto; its promise settles before this one's.
    await import("node:crypto");
  }
});

Deno.test("HmacSha256 passes RFC 4231's test cases 1, 2 and 6", () => {
  const cases: [Uint8Array, Uint8Array, string][] = [
    [
      new Uint8Array(20).fill(0x0b),
      new TextEncoder().encode("Hi There"),
      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    ],
    [
      new TextEncoder().encode("Jefe"),
      new TextEncoder().encode("what do ya want for nothing?"),
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ],
    [
      new Uint8Array(131).fill(0xaa),
      new TextEncoder().encode("Test Using Larger Than Block-Size Key - Hash Key First"),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ],
  ];
  for (const [key, data, want] of cases) assertEquals(new HmacSha256(key).mac(data), fromHex(want));
});

Deno.test("hmacSync frames its parts (4-byte lengths) and encodes strings as UTF-8", async () => {
  const { hmacSync } = await import("../../transports/proof.ts");
  const parts: (string | Uint8Array)[] = ["choir/x", "héllo ✓", bytes(5000, 3), "", bytes(3, 1)];
  const enc = new TextEncoder();
  const framed = parts.flatMap((p) => {
    const b = typeof p === "string" ? enc.encode(p) : p;
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, b.length);
    return [len, b];
  });
  const input = new Uint8Array(framed.reduce((n, b) => n + b.length, 0));
  framed.reduce((off, b) => (input.set(b, off), off + b.length), 0);
  const want = createHmac("sha256", "the token").update(input).digest("hex");
  assertEquals(toHex(hmacSync("the token", ...parts)), want);
  assertEquals(toHex(hmacSync("the token", ...parts)), want); // the scratch reused after growing
});
