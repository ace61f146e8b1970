# Consul client agent of "global" on a database host (Consul 1.8 syntax), for
# Patroni only: a Consul agent belongs to one datacenter, and Patroni's
# sessions are bound to its agent's node, so Patroni needs an agent of the
# datacenter that holds its DCS.  The same host runs site-client.hcl for
# pgbouncer-helper register; this agent takes other ports and another data_dir.
# Replace @ENCRYPT_KEY@ with the key of global-server.hcl.
datacenter = "global"
primary_datacenter = "global"
data_dir = "/var/lib/consul-global"
client_addr = "127.0.0.1"
# bind_addr = "10.1.0.21"
encrypt = "@ENCRYPT_KEY@"
retry_join = ["consul-global-1.example", "consul-global-2.example", "consul-global-3.example"]
# site-client.hcl keeps Consul's default ports (8500 HTTP, 8600 DNS, 8301
# LAN gossip); patroni.yml's consul.host names this HTTP port.  No DNS: the
# site agent answers DNS.
ports {
  http = 8700
  dns = -1
  serf_lan = 8701
}
acl {
  enabled = true
  default_policy = "deny"
  down_policy = "extend-cache"
  # `consul acl set-agent-token -http-addr=127.0.0.1:8700 agent <token>`
  enable_token_persistence = true
}
# TLS as in global-server.hcl (ca_file, verify_outgoing, verify_server_hostname).
