/** CPU time of another process, from /proc (Linux). */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let clkTck: number | undefined;

/** Clock ticks per second (`getconf CLK_TCK`): the unit of utime and stime in /proc/<pid>/stat. */
export function clockTicksPerSecond(): number {
  if (clkTck === undefined) {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    if (!Number.isInteger(n) || n < 1) throw new Error(`getconf CLK_TCK gave "${n}"`);
    clkTck = n;
  }
  return clkTck;
}

/**
 * User + system CPU seconds a process has used so far, all its threads included
 * (fields 14 and 15 of /proc/<pid>/stat, in clock ticks).
 */
export function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may contain spaces: split after it.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  const utime = Number(rest[14 - 3]);
  const stime = Number(rest[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`cannot parse /proc/${pid}/stat`);
  return (utime + stime) / clockTicksPerSecond();
}

/**
 * CPU seconds the whole machine spent busy so far (all CPUs; user, nice, system, irq and
 * softirq from the first line of /proc/stat), and the seconds stolen by the hypervisor.
 */
export function machineCpuSeconds(): { busy: number; steal: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  const hz = clockTicksPerSecond();
  return { busy: (user + nice + system + irq + softirq) / hz, steal: steal / hz };
}

export interface CpuShare {
  wallS: number;
  /** CPU seconds of each watched process over the window. */
  processes: Record<string, number>;
  /** This process (the load generator). */
  selfS: number;
  /** The machine's busy CPU seconds over the window, all CPUs. */
  machineBusyS: number;
  /** Busy CPU seconds not accounted for by the watched processes or this one: other load on the machine. */
  otherS: number;
  stealS: number;
}

/** Starts a CPU accounting window over some processes (by pid), this process and the whole machine. */
export function cpuWindow(pids: Record<string, number | undefined>): () => CpuShare {
  const t0 = performance.now();
  const m0 = machineCpuSeconds();
  const self0 = process.cpuUsage();
  const p0 = Object.fromEntries(Object.entries(pids).flatMap(([k, pid]) => (pid ? [[k, processCpuSeconds(pid)]] : [])));
  return () => {
    const processes: Record<string, number> = {};
    for (const [k, pid] of Object.entries(pids)) if (pid && k in p0) processes[k] = processCpuSeconds(pid) - p0[k]!;
    const self = process.cpuUsage(self0);
    const selfS = (self.user + self.system) / 1e6;
    const m1 = machineCpuSeconds();
    const machineBusyS = m1.busy - m0.busy;
    const watched = Object.values(processes).reduce((a, b) => a + b, 0) + selfS;
    return { wallS: (performance.now() - t0) / 1000, processes, selfS, machineBusyS, otherS: Math.max(0, machineBusyS - watched), stealS: m1.steal - m0.steal };
  };
}
