/**
 * @module
 * CRC32C (Castagnoli, the iSCSI/ext4 polynomial), computed eight bytes at a time from eight tables
 * ("slicing by 8"). Used by the TCP channel's optional frame checksums (`CHOIR_CHECKSUM=1`).
 */

const POLY = 0x82f63b78; // reflected 0x1EDC6F41

// Int32 tables and int32 arithmetic throughout: V8 keeps it all in small integers (uint32 values
// above 2^31 would become doubles and run several times slower).
const TABLES: Int32Array[] = (() => {
  const t = Array.from({ length: 8 }, () => new Int32Array(256));
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[0][i] = c | 0;
  }
  for (let i = 0; i < 256; i++) {
    for (let s = 1; s < 8; s++) t[s][i] = (t[s - 1][i] >>> 8) ^ t[0][t[s - 1][i] & 0xff];
  }
  return t;
})();

/** The CRC32C of `bytes` (continuing from `crc`, the value of the bytes before, default 0). */
export function crc32c(bytes: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES;
  let c = ~crc | 0;
  let i = 0;
  const n = bytes.length;
  const end8 = n - (n % 8);
  for (; i < end8; i += 8) {
    const a = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    c = t7[a & 0xff] ^ t6[(a >> 8) & 0xff] ^ t5[(a >> 16) & 0xff] ^ t4[(a >> 24) & 0xff] ^
      t3[bytes[i + 4]] ^ t2[bytes[i + 5]] ^ t1[bytes[i + 6]] ^ t0[bytes[i + 7]];
  }
  for (; i < n; i++) c = t0[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
