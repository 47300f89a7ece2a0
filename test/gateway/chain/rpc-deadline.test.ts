/**
 * Deadlines on chain JSON-RPC (gateway/chain/rpc-deadline.ts) against real loopback servers:
 * one that accepts TCP and never answers (a SIGSTOPped node, as far as a client can tell), one
 * that sends its headers and then stalls, a closed port, and a small JSON-RPC server. Every
 * call fails with its code within its deadline, and the silent server sees the connection
 * closed (no request left hanging); the ethers provider of the gateway surfaces the same codes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { isChainError } from '../../../gateway/chain/errors.js';
import { probeChain, rpcCall } from '../../../gateway/chain/rpc-deadline.js';
import { chainProvider } from '../../../gateway/chain/runtime.js';
import { findFreePort } from '../../../gateway/util/net.js';

let silent: NetServer;
let silentUrl: string;
const silentSockets: Socket[] = [];
let stall: HttpServer;
let stallUrl: string;
let rpc: HttpServer;
let rpcUrl: string;
const seenAuth: (string | undefined)[] = [];
let closedUrl: string;

async function listen(s: NetServer | HttpServer): Promise<number> {
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const a = s.address();
  if (!a || typeof a !== 'object') throw new Error('no address');
  return a.port;
}

beforeAll(async () => {
  silent = createNetServer((sock) => {
    silentSockets.push(sock);
    sock.resume(); // read the request, never answer
    sock.on('error', () => undefined);
  });
  silentUrl = `http://127.0.0.1:${await listen(silent)}`;
  stall = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"jsonrpc":"2.0","id":1,'); // and nothing more
  });
  stallUrl = `http://127.0.0.1:${await listen(stall)}`;
  rpc = createHttpServer((req, res) => {
    seenAuth.push(req.headers.authorization);
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const answer = (m: { id: number; method: string }): unknown =>
        m.method === 'eth_blockNumber'
          ? { jsonrpc: '2.0', id: m.id, result: '0x2a' }
          : { jsonrpc: '2.0', id: m.id, error: { code: -32601, message: `method ${m.method} not found` } };
      const doc = JSON.parse(body) as { id: number; method: string } | { id: number; method: string }[];
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(Array.isArray(doc) ? doc.map(answer) : answer(doc)));
    });
  });
  rpcUrl = `http://127.0.0.1:${await listen(rpc)}`;
  closedUrl = `http://127.0.0.1:${await findFreePort()}`;
});

afterAll(async () => {
  for (const s of silentSockets) s.destroy();
  stall.closeAllConnections();
  rpc.closeAllConnections();
  await Promise.all([silent, stall, rpc].map((s) => new Promise((r) => s.close(r))));
});

describe('a deadline on every chain RPC', () => {
  it('a node that accepts and never answers: CHAIN_TIMEOUT, and the connection is closed', async () => {
    const before = silentSockets.length;
    const err = await rpcCall(`${silentUrl}/v3/SECRET-API-KEY`, 'eth_blockNumber', [], 300).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isChainError(err, 'CHAIN_TIMEOUT')).toBe(true);
    if (!isChainError(err)) throw err;
    expect(err.detail).toEqual({ url: silentUrl, method: 'eth_blockNumber', timeoutMs: 300 });
    expect(err.message).not.toContain('SECRET-API-KEY');
    const sock = silentSockets[before]!;
    if (!sock.closed) await once(sock, 'close');
    expect(sock.closed).toBe(true);
  });

  it("the gateway's ethers provider fails its calls with CHAIN_TIMEOUT at its deadline", async () => {
    const provider = chainProvider(silentUrl, 31337, 100, 300);
    try {
      const err = await provider.getBlockNumber().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isChainError(err, 'CHAIN_TIMEOUT')).toBe(true);
      expect((err as Error).message).toMatch(/^CHAIN_TIMEOUT: .*"method":"eth_blockNumber".*"timeoutMs":300/);
    } finally {
      provider.destroy();
    }
  });

  it('headers and then silence: CHAIN_TIMEOUT (the body is under the deadline too)', async () => {
    const err = await rpcCall(stallUrl, 'eth_blockNumber', [], 300).catch((e: unknown) => e);
    expect(isChainError(err, 'CHAIN_TIMEOUT')).toBe(true);
  });

  it('a closed port: CHAIN_UNREACHABLE with the reason', async () => {
    const err = await probeChain(closedUrl, 2000).catch((e: unknown) => e);
    expect(isChainError(err, 'CHAIN_UNREACHABLE')).toBe(true);
    if (!isChainError(err)) throw err;
    expect(err.detail).toMatchObject({ method: 'eth_blockNumber', reason: 'ECONNREFUSED' });
    const provider = chainProvider(closedUrl, 31337, 100, 2000);
    try {
      expect(isChainError(await provider.getBlockNumber().catch((e: unknown) => e), 'CHAIN_UNREACHABLE')).toBe(true);
    } finally {
      provider.destroy();
    }
  });

  it('a node that answers: the head, through the probe and through ethers; credentials in the URL become a header', async () => {
    expect(await probeChain(rpcUrl, 2000)).toBe(42);
    const provider = chainProvider(rpcUrl.replace('http://', 'http://user:p%40ss@'), 31337, 100, 2000);
    try {
      expect(await provider.getBlockNumber()).toBe(42);
    } finally {
      provider.destroy();
    }
    expect(seenAuth.at(-1)).toBe(`Basic ${Buffer.from('user:p@ss').toString('base64')}`);
  });

  it("a JSON-RPC error is CHAIN_RPC_ERROR with the node's message", async () => {
    const err = await rpcCall(rpcUrl, 'eth_nope', [], 2000).catch((e: unknown) => e);
    expect(isChainError(err, 'CHAIN_RPC_ERROR')).toBe(true);
    if (!isChainError(err)) throw err;
    expect(err.detail).toMatchObject({ method: 'eth_nope', error: 'method eth_nope not found', rpcCode: -32601 });
  });

  it('refuses a deadline that is not a positive integer', () => {
    expect(() => chainProvider(rpcUrl, 1, 100, 0)).toThrow(TypeError);
    expect(() => chainProvider(rpcUrl, 1, 100, 1.5)).toThrow(TypeError);
  });
});
