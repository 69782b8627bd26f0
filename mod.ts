/**
 * spire-cacerts: SPIRE's CA certificate in every container's system trust store, kept current
 * without restarts.
 *
 * @module
 */

export * from "./trust_store/mod.ts";
