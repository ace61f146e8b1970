# Consul server of a site's own datacenter (Consul 1.8 syntax): dc1 here; for
# dc2 change datacenter, node_name and retry_join to dc2's.  It holds the
# services pgbouncer-helper registers and the prepared queries that answer
# DNS for the site; Patroni's keys are not here but in "global".
# Replace @ENCRYPT_KEY@ with the key of global-server.hcl.
datacenter = "dc1"
primary_datacenter = "global"
node_name = "consul-dc1-1"
data_dir = "/var/lib/consul"
server = true
bootstrap_expect = 3
client_addr = "127.0.0.1"
# bind_addr = "10.1.0.11"    # when the host has more than one private address
encrypt = "@ENCRYPT_KEY@"
retry_join = ["consul-dc1-1.example", "consul-dc1-2.example", "consul-dc1-3.example"]
# WAN: the global servers; requests with dc=global (the poolers' reads of
# Patroni's keys, [consul] datacenter = global) travel this way
retry_join_wan = ["consul-global-1.example", "consul-global-2.example", "consul-global-3.example"]
acl {
  enabled = true
  default_policy = "deny"
  down_policy = "extend-cache"
  # tokens and policies come from global; the replication token (a global
  # token with acl = "write") is set with
  # `consul acl set-agent-token replication <token>`
  enable_token_replication = true
  enable_token_persistence = true
}
# TLS as in global-server.hcl, with a certificate for server.dc1.consul.
# ca_file = "/etc/consul.d/ca.pem"
# cert_file = "/etc/consul.d/server.pem"
# key_file = "/etc/consul.d/server-key.pem"
# verify_incoming_rpc = true
# verify_outgoing = true
# verify_server_hostname = true
