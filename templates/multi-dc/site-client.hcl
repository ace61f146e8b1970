# Consul client agent of a site's datacenter, dc1 here (Consul 1.8 syntax), on
# every host of the site: on a pooler host the fork reads Patroni's keys of
# "global" through it ([consul] datacenter = global) and DNS clients ask it;
# on a database host pgbouncer-helper register puts the member's services in
# it.  For dc2 change datacenter and retry_join to dc2's.
# Replace @ENCRYPT_KEY@ with the key of global-server.hcl.
datacenter = "dc1"
primary_datacenter = "global"
data_dir = "/var/lib/consul"
client_addr = "127.0.0.1"
# bind_addr = "10.1.0.21"
encrypt = "@ENCRYPT_KEY@"
retry_join = ["consul-dc1-1.example", "consul-dc1-2.example", "consul-dc1-3.example"]
# Consul's default ports: HTTP 8500 (the fork, pgbouncer-helper), DNS 8600
# (`dig @127.0.0.1 -p 8600 raddb-query.query.consul`), LAN gossip 8301.
acl {
  enabled = true
  default_policy = "deny"
  down_policy = "extend-cache"
  # `consul acl set-agent-token agent <token>`; the fork's token must be a
  # global token (not -local) with key_prefix "service/" read, for it is
  # checked in global
  enable_token_persistence = true
}
# TLS and the scope limits as in ../consul.hcl.
