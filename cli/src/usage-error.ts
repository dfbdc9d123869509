/** A command line that cannot be run as given; `cordon` prints it and exits 2 without calling the mesh. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A negative answer that ends a command with exit code 1, such as a key that does not exist. */
export class NegativeAnswer extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NegativeAnswer';
  }
}
