// Reads a JSON list of orders from stdin and writes a per-customer report.
'use strict';

const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  let orders;
  try {
    orders = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (error) {
    console.error(`stdin is not JSON: ${error.message}`);
    process.exit(65);
  }

  const totals = new Map();
  let refunded = 0;
  for (const order of orders) {
    if (order.status === 'refunded') {
      refunded += 1;
      continue;
    }
    totals.set(order.customer, (totals.get(order.customer) ?? 0) + order.amount);
  }

  const customers = [...totals.entries()].sort((a, b) => b[1] - a[1]);
  console.log(`orders: ${orders.length} (${refunded} refunded)`);
  for (const [customer, total] of customers) {
    console.log(`${customer.padEnd(8)} ${total.toFixed(2).padStart(9)}`);
  }
  const sum = customers.reduce((acc, [, total]) => acc + total, 0);
  console.log(`total    ${sum.toFixed(2).padStart(9)}`);
});
