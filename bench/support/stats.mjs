// Small statistics helpers shared by the benchmarks.

/** Returns the q-quantile (0..1) of a list of numbers by nearest rank. */
export function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index];
}

/** Formats milliseconds with one decimal. */
export function ms(value) {
  return `${value.toFixed(1)} ms`;
}

/** Prints an aligned table: an array of rows, the first being the header. */
export function printTable(rows) {
  const widths = rows[0].map((_, column) =>
    Math.max(...rows.map((row) => String(row[column]).length)),
  );
  for (const row of rows) {
    process.stdout.write(
      `${row.map((cell, column) => String(cell).padEnd(widths[column])).join('  ')}\n`,
    );
  }
}
