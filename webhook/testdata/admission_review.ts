/**
 * AdmissionReview request bodies for tests and benchmarks.
 *
 * @module
 */

/**
 * An `admission.k8s.io/v1` AdmissionReview asking to CREATE `pod` (uid `u-1`, namespace
 * `default`); fields of `request` replace those of the request.
 */
export function podCreateReview(
  pod: Record<string, unknown>,
  request: Record<string, unknown> = {},
): { apiVersion: string; kind: string; request: Record<string, unknown> } {
  return {
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "u-1",
      kind: { group: "", version: "v1", kind: "Pod" },
      resource: { group: "", version: "v1", resource: "pods" },
      operation: "CREATE",
      namespace: "default",
      object: pod,
      ...request,
    },
  };
}
