import { UsageError } from './usage-error.js';

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Parses "500ms", "10s", "1.5s", "2m", "1h" or "7d" into milliseconds; a unit is required. */
export function parseDuration(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/i.exec(text.trim());
  const unit = match?.[2]?.toLowerCase();
  if (match?.[1] === undefined || unit === undefined) {
    throw new UsageError(
      `${flag} "${text}" is not a duration; use a number with a unit such as 500ms, 10s, 2m or 1h`,
    );
  }
  return wholeNumber(Number(match[1]) * (DURATION_UNITS_MS[unit] ?? 1), text, flag);
}

/** Rounds a parsed value, rejecting one beyond what a request field can carry exactly. */
function wholeNumber(value: number, text: string, flag: string): number {
  const rounded = Math.round(value);
  if (!Number.isSafeInteger(rounded)) {
    throw new UsageError(
      `${flag} "${text}" is too large; the most a flag takes is ${Number.MAX_SAFE_INTEGER}`,
    );
  }
  return rounded;
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** Parses "1048576", "64k", "256m" or "1g" (binary units) into bytes. */
export function parseSize(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)([a-z]*)$/i.exec(text.trim());
  const multiplier = match?.[2] === undefined ? undefined : SIZE_UNITS[match[2].toLowerCase()];
  if (match?.[1] === undefined || multiplier === undefined) {
    throw new UsageError(
      `${flag} "${text}" is not a size; use bytes or a unit such as 64k, 256m or 1g`,
    );
  }
  return wholeNumber(Number(match[1]) * multiplier, text, flag);
}

/** Parses a whole number of at least `min`. */
export function parseCount(text: string, flag: string, min = 0): number {
  if (!/^\d+$/.test(text) || Number(text) < min || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(
      `${flag} "${text}" is not allowed; give a whole number of at least ${min}`,
    );
  }
  return Number(text);
}

/** Formats milliseconds for a person: "312 ms", "2.41 s". */
export function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** Formats a byte count for a person: "812 B", "8.1 MiB". */
export function formatSize(bytes: number): string {
  const units = ['KiB', 'MiB', 'GiB'];
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit] ?? 'GiB'}`;
}
