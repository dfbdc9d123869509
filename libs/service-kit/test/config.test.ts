import { describe, expect, it } from 'vitest';
import {
  addressVar,
  bytesVar,
  ConfigError,
  durationMsVar,
  enumVar,
  integerVar,
  parseBytes,
  parseDurationMs,
  readConfig,
} from '@cordon/service-kit';

const spec = {
  runs: integerVar('CORDON_TEST_RUNS', { description: 'runs', default: 4, min: 1, max: 64 }),
  memoryBytes: bytesVar('CORDON_TEST_MEMORY_BYTES', {
    description: 'memory',
    default: 256 * 1024 ** 2,
    min: 1024 ** 2,
    max: 1024 ** 3,
  }),
  drainMs: durationMsVar('CORDON_TEST_DRAIN_MS', {
    description: 'drain',
    default: 1000,
    min: 0,
    max: 60_000,
  }),
  mode: enumVar('CORDON_TEST_MODE', ['off', 'report'], { description: 'mode', default: 'off' }),
  address: addressVar('CORDON_TEST_ADDRESS', { description: 'address', default: '127.0.0.1:7101' }),
};

describe('readConfig', () => {
  it('takes every default when nothing is set', () => {
    expect(readConfig(spec, {})).toEqual({
      runs: 4,
      memoryBytes: 268_435_456,
      drainMs: 1000,
      mode: 'off',
      address: '127.0.0.1:7101',
    });
  });

  it('treats an empty variable as unset', () => {
    expect(readConfig(spec, { CORDON_TEST_RUNS: '' }).runs).toBe(4);
  });

  it('parses units and accepts values at both edges of a range', () => {
    const config = readConfig(spec, {
      CORDON_TEST_RUNS: '64',
      CORDON_TEST_MEMORY_BYTES: '1m',
      CORDON_TEST_DRAIN_MS: '1m',
      CORDON_TEST_MODE: 'report',
      CORDON_TEST_ADDRESS: '[::1]:0',
    });
    expect(config).toEqual({
      runs: 64,
      memoryBytes: 1_048_576,
      drainMs: 60_000,
      mode: 'report',
      address: '[::1]:0',
    });
    expect(readConfig(spec, { CORDON_TEST_RUNS: '1' }).runs).toBe(1);
  });

  it('names every bad variable, its value and what is allowed on one line', () => {
    const read = (): unknown =>
      readConfig(spec, {
        CORDON_TEST_RUNS: '65',
        CORDON_TEST_MEMORY_BYTES: '2g',
        CORDON_TEST_ADDRESS: 'x:70000',
      });

    expect(read).toThrow(ConfigError);
    expect(read).toThrow(
      'invalid configuration: CORDON_TEST_RUNS="65" is invalid: expected an integer from 1 to 64; ' +
        'CORDON_TEST_MEMORY_BYTES="2g" is invalid: expected a size from 1MiB to 1GiB, in bytes or with a unit such as 64k, 16m or 1g; ' +
        'CORDON_TEST_ADDRESS="x:70000" is invalid: expected host:port, such as 127.0.0.1:7101 or [::1]:7101, with a port from 0 to 65535',
    );
  });

  it.each(['0', '-1', '1.5', '1e3', ' 3', 'four'])('rejects runs=%j', (text) => {
    expect(() => readConfig(spec, { CORDON_TEST_RUNS: text })).toThrow(/CORDON_TEST_RUNS=/);
  });
});

describe('unit parsers', () => {
  it.each([
    ['1048576', 1_048_576],
    ['64k', 65_536],
    ['16MiB', 16_777_216],
    ['1g', 1_073_741_824],
    ['12 mb', 12_582_912],
  ])('reads %j as %d bytes', (text, bytes) => {
    expect(parseBytes(text)).toBe(bytes);
  });

  it.each(['', 'm', '1.5m', '-1', '1t', '99999999999999999g'])('rejects %j as a size', (text) => {
    expect(parseBytes(text)).toBeUndefined();
  });

  it.each([
    ['1500', 1500],
    ['500ms', 500],
    ['10s', 10_000],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['3d', 259_200_000],
  ])('reads %j as %d ms', (text, ms) => {
    expect(parseDurationMs(text)).toBe(ms);
  });

  it.each(['', 's', '1.5s', '-1s', '3w'])('rejects %j as a duration', (text) => {
    expect(parseDurationMs(text)).toBeUndefined();
  });
});
