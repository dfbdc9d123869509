import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;

/** Reads inventory commands from stdin, one per line: "add ITEM COUNT" or "take ITEM COUNT". */
public class Main {
  public static void main(String[] args) throws IOException {
    Inventory inventory = new Inventory();
    BufferedReader reader = new BufferedReader(new InputStreamReader(System.in));
    String line;
    int lineNumber = 0;
    while ((line = reader.readLine()) != null) {
      lineNumber++;
      String[] parts = line.trim().split("\\s+");
      if (parts.length != 3) {
        System.err.println("line " + lineNumber + ": expected COMMAND ITEM COUNT");
        continue;
      }
      int count = Integer.parseInt(parts[2]);
      try {
        if (parts[0].equals("add")) {
          inventory.add(parts[1], count);
        } else if (parts[0].equals("take")) {
          inventory.take(parts[1], count);
        } else {
          System.err.println("line " + lineNumber + ": unknown command " + parts[0]);
        }
      } catch (IllegalStateException error) {
        System.err.println("line " + lineNumber + ": " + error.getMessage());
      }
    }
    System.out.print(inventory.report());
  }
}
