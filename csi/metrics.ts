/**
 * Prometheus text exposition (format 0.0.4) written by hand: the allowed dependencies include no
 * Prometheus client, and the driver needs only labelled counters and gauges.
 *
 * @module
 */

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) =>
    `${k}="${v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')}"`
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

interface Family {
  help: string;
  type: "counter" | "gauge";
  values: Map<string, { labels: Labels; value: number }>;
  collect?: () => number;
}

/** A registry of counters and gauges rendered as Prometheus text. */
export class Metrics {
  readonly #families = new Map<string, Family>();

  /** Declares a counter or gauge (idempotent). */
  define(name: string, type: "counter" | "gauge", help: string, collect?: () => number): void {
    if (!this.#families.has(name)) {
      this.#families.set(name, { help, type, values: new Map(), collect });
    }
  }

  /** Adds `by` (default 1) to a series. */
  inc(name: string, labels: Labels = {}, by = 1): void {
    const family = this.#families.get(name);
    if (!family) throw new Error(`metric ${name} is not defined`);
    const id = labelText(labels);
    const series = family.values.get(id) ?? { labels, value: 0 };
    series.value += by;
    family.values.set(id, series);
  }

  /** Sets a series. */
  set(name: string, value: number, labels: Labels = {}): void {
    const family = this.#families.get(name);
    if (!family) throw new Error(`metric ${name} is not defined`);
    family.values.set(labelText(labels), { labels, value });
  }

  /** Current value of a series (0 when unset). */
  value(name: string, labels: Labels = {}): number {
    return this.#families.get(name)?.values.get(labelText(labels))?.value ?? 0;
  }

  /** The text exposition. */
  render(): string {
    const lines: string[] = [];
    for (const [name, family] of this.#families) {
      lines.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} ${family.type}`);
      if (family.collect) lines.push(`${name} ${family.collect()}`);
      for (const { labels, value } of family.values.values()) {
        lines.push(`${name}${labelText(labels)} ${value}`);
      }
    }
    return lines.join("\n") + "\n";
  }
}
