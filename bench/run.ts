/**
 * `deno task bench`: runs every benchmark of the project one after another, each printing its
 * figures beside a baseline measured in the same run.
 *
 * @module
 */

const steps: { name: string; args: string[] }[] = [
  { name: "trust-store render", args: ["bench", "-A", "csi/trust_store/render_bench.ts"] },
  { name: "SVID loading", args: ["bench", "-A", "spire/svid_bench.ts"] },
  { name: "webhook handler (in memory)", args: ["bench", "-A", "webhook/mutate_bench.ts"] },
  { name: "webhook /mutate over TLS", args: ["run", "-A", "webhook/mutate_bench.ts"] },
  { name: "CSI publish and Secret-to-swap", args: ["run", "-A", "csi/publish_bench.ts"] },
];

let failed = 0;
for (const step of steps) {
  console.log(`\n=== ${step.name}: deno ${step.args.join(" ")}`);
  const { code } = await new Deno.Command(Deno.execPath(), { args: step.args }).spawn().status;
  if (code !== 0) {
    console.error(`${step.name} failed with exit code ${code}`);
    failed++;
  }
}
Deno.exit(failed === 0 ? 0 : 1);
