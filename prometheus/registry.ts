/**
 * A metrics registry rendered as Prometheus text exposition (format 0.0.4).
 *
 * Written by hand: the project's allowed dependencies include no Prometheus client, and both
 * programs need only labelled counters, gauges and one histogram, which is a few dozen lines.
 *
 * @module
 */

/** Label names to values of one series. */
export type Labels = Record<string, string>;

/** The metric types this registry renders. */
export type MetricType = "counter" | "gauge" | "histogram";

/** Raised when a metric is used before it is defined, or with the wrong operation. */
export class MetricError extends Error {
  /**
   * Creates the error.
   *
   * @param message what was wrong
   */
  constructor(message: string) {
    super(message);
    this.name = "MetricError";
  }
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function escapeHelp(help: string): string {
  return help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

interface HistogramSeries {
  labels: Labels;
  buckets: number[];
  count: number;
  sum: number;
}

interface Family {
  help: string;
  type: MetricType;
  values: Map<string, { labels: Labels; value: number }>;
  histograms: Map<string, HistogramSeries>;
  bounds: readonly number[];
  collect?: () => number;
}

/** Options of {@link Registry.define}. */
export interface DefineOptions {
  /** For gauges: read the value at render time instead of storing it. */
  collect?: () => number;
  /** For histograms: the upper bounds of the buckets, ascending (`+Inf` is implied). */
  buckets?: readonly number[];
}

/** A registry of counters, gauges and histograms. */
export class Registry {
  readonly #families = new Map<string, Family>();

  /** Declares a metric family (idempotent: a second definition of a name is ignored). */
  define(name: string, type: MetricType, help: string, options: DefineOptions = {}): void {
    if (this.#families.has(name)) return;
    const bounds = options.buckets ?? [];
    if (type === "histogram" && bounds.length === 0) {
      throw new MetricError(`histogram ${name} needs buckets`);
    }
    this.#families.set(name, {
      help,
      type,
      values: new Map(),
      histograms: new Map(),
      bounds: [...bounds],
      collect: options.collect,
    });
  }

  #family(name: string, types: readonly MetricType[]): Family {
    const family = this.#families.get(name);
    if (!family) throw new MetricError(`metric ${name} is not defined`);
    if (!types.includes(family.type)) {
      throw new MetricError(`metric ${name} is a ${family.type}, not a ${types.join(" or ")}`);
    }
    return family;
  }

  /** Adds `by` (default 1) to a counter or gauge series. */
  inc(name: string, labels: Labels = {}, by = 1): void {
    const family = this.#family(name, ["counter", "gauge"]);
    const id = labelText(labels);
    const series = family.values.get(id) ?? { labels, value: 0 };
    series.value += by;
    family.values.set(id, series);
  }

  /** Sets a gauge (or counter) series. */
  set(name: string, value: number, labels: Labels = {}): void {
    const family = this.#family(name, ["counter", "gauge"]);
    family.values.set(labelText(labels), { labels, value });
  }

  /** Records one observation in a histogram series. */
  observe(name: string, value: number, labels: Labels = {}): void {
    const family = this.#family(name, ["histogram"]);
    const id = labelText(labels);
    let series = family.histograms.get(id);
    if (!series) {
      series = { labels, buckets: new Array(family.bounds.length).fill(0), count: 0, sum: 0 };
      family.histograms.set(id, series);
    }
    series.count++;
    series.sum += value;
    family.bounds.forEach((bound, i) => {
      if (value <= bound) series.buckets[i]++;
    });
  }

  /** Current value of a counter or gauge series (0 when unset); a histogram's count. */
  value(name: string, labels: Labels = {}): number {
    const family = this.#families.get(name);
    if (!family) return 0;
    if (family.type === "histogram") return family.histograms.get(labelText(labels))?.count ?? 0;
    return family.values.get(labelText(labels))?.value ?? 0;
  }

  /** The text exposition, families in definition order. */
  render(): string {
    const lines: string[] = [];
    for (const [name, family] of this.#families) {
      lines.push(`# HELP ${name} ${escapeHelp(family.help)}`, `# TYPE ${name} ${family.type}`);
      if (family.collect) lines.push(`${name} ${family.collect()}`);
      for (const { labels, value } of family.values.values()) {
        lines.push(`${name}${labelText(labels)} ${value}`);
      }
      for (const series of family.histograms.values()) {
        family.bounds.forEach((bound, i) => {
          const le = labelText({ ...series.labels, le: String(bound) });
          lines.push(`${name}_bucket${le} ${series.buckets[i]}`);
        });
        lines.push(`${name}_bucket${labelText({ ...series.labels, le: "+Inf" })} ${series.count}`);
        lines.push(`${name}_sum${labelText(series.labels)} ${series.sum}`);
        lines.push(`${name}_count${labelText(series.labels)} ${series.count}`);
      }
    }
    return lines.join("\n") + "\n";
  }
}
