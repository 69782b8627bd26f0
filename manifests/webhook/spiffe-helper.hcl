# spiffe-helper 0.11.0 sidecar: keeps the SVID files in cert_dir current (rewritten in place:
# cert, then key, then bundle; readers must tolerate torn sets).
agent_address = "/run/spire/agent-sockets/spire-agent.sock"
cert_dir = "/run/spiffe/certs"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
daemon_mode = true

health_checks {
  listener_enabled = true
  bind_port = 8081
  liveness_path = "/live"
  readiness_path = "/ready"
}
