/**
 * The key a VALUE line (after `VALUE `) begins with, decoded: what a parser
 * sink that asked for every key claims. The real connection matches bytes
 * against the keys it sent instead.
 */
export function keyOfLine (buf: Buffer, start: number, end: number): string {
  let keyEnd = start
  while (keyEnd < end && buf[keyEnd] !== 0x20) keyEnd++
  return buf.toString('utf8', start, keyEnd)
}
