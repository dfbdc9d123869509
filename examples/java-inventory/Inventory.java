import java.util.Map;
import java.util.TreeMap;

/** Item counts that never go below zero. */
public class Inventory {
  private final Map<String, Integer> counts = new TreeMap<>();

  public void add(String item, int count) {
    counts.merge(item, count, Integer::sum);
  }

  public void take(String item, int count) {
    int available = counts.getOrDefault(item, 0);
    if (available < count) {
      throw new IllegalStateException(
          "cannot take " + count + " " + item + ", only " + available + " in stock");
    }
    counts.put(item, available - count);
  }

  public String report() {
    StringBuilder report = new StringBuilder();
    for (Map.Entry<String, Integer> entry : counts.entrySet()) {
      report.append(String.format("%-8s %3d%n", entry.getKey(), entry.getValue()));
    }
    return report.toString();
  }
}
