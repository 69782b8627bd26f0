# spiffe-helper 0.11.0 init container: fetch the first SVID set once and exit, so the main
# container starts with certificates in place.
agent_address = "/run/spire/agent-sockets/spire-agent.sock"
cert_dir = "/run/spiffe/certs"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
daemon_mode = false
