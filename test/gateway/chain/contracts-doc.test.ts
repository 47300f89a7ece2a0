/**
 * docs/contracts.md, "Returned values": every selector and every struct layout it states is
 * the compiled ABI's (gateway/chain/artifacts.ts), so a client written from the page decodes
 * what the contracts return.
 */
import { readFileSync } from 'node:fs';
import { Interface } from 'ethers';
import { describe, expect, it } from 'vitest';
import { anchorRegistryAbi, consentRegistryAbi, deviceRegistryAbi } from '../../../gateway/chain/artifacts.js';

const doc = readFileSync(new URL('../../../docs/contracts.md', import.meta.url), 'utf8');
const section = doc.slice(doc.indexOf('## Returned values'), doc.indexOf('## Gas (measured)'));
const abis = [new Interface(deviceRegistryAbi), new Interface(anchorRegistryAbi), new Interface(consentRegistryAbi)];
const fn = (signature: string) => abis.map((i) => i.getFunction(signature)).find((f) => f !== null)!;

describe('docs/contracts.md returned values', () => {
  it('gives each function its selector', () => {
    // Rows name one or two signatures and as many selectors, in the same order.
    const rows = [...section.matchAll(/^\|([^|]*\([^|]*\)[^|]*)\|([^|]*0x[0-9a-f]{8}[^|]*)\|/gm)];
    const named: [string, string][] = [...section.matchAll(/`(\w+\([\w,]*\))` \(selector `(0x[0-9a-f]{8})`\)/g)].map((m) => [m[1]!, m[2]!]);
    for (const r of rows) {
      const sigs = [...r[1]!.matchAll(/`(\w+\([\w,]*\))`/g)].map((m) => m[1]!);
      const sels = [...r[2]!.matchAll(/0x[0-9a-f]{8}/g)].map((m) => m[0]);
      expect(sels.length, r[0]).toBe(sigs.length);
      sigs.forEach((s, i) => named.push([s, sels[i]!]));
    }
    expect(named.length).toBe(13); // three struct getters and ten other view functions
    for (const [sig, sel] of named) expect(fn(sig).selector, sig).toBe(sel);
  });

  it('lists each struct field in ABI order with its Solidity type', () => {
    for (const [struct, sig] of [
      ['Device', 'device(bytes8)'],
      ['Anchor', 'anchorOf(address,uint8,uint64)'],
      ['Grant', 'getGrant(uint64)'],
    ] as const) {
      const table = section.slice(section.indexOf(`\`${struct}\`, from`));
      const rows = [...table.slice(0, table.indexOf('\n\n', table.indexOf('| bytes |'))).matchAll(/^\| (\d+)-(\d+) \| `(\w+)` \| `(\w+)` \|/gm)];
      const outputs = fn(sig).outputs[0]!.components!;
      expect(
        rows.map((r) => [r[3], r[4]]),
        struct,
      ).toEqual(outputs.map((c) => [c.name, c.type]));
      rows.forEach((r, i) => expect([Number(r[1]), Number(r[2])]).toEqual([32 * i, 32 * i + 31]));
    }
  });
});
