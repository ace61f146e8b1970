# Consul client agent on a pooler or database host (Consul 1.8 syntax).
datacenter = "dc1"
data_dir = "/var/lib/consul"
client_addr = "127.0.0.1"
retry_join = ["consul-1.example", "consul-2.example", "consul-3.example"]
acl {
  enabled = true
  default_policy = "deny"
  down_policy = "extend-cache"
}
# https for the local API: ports { https = 8501 } with cert_file/key_file/ca_file,
# and [consul] url = https://127.0.0.1:8501 with ca_file in pgbouncer.ini.
# A pooler following many Patroni scopes: each scope's blocking query holds a
# connection. Over http that is one per scope, and the agent refuses a client
# address past limits.http_max_conns_per_client (default 200), the pooler and
# every other local client alike: keep to about 150 scopes over http. Over
# https the agent speaks HTTP/2 and the pooler needs at most 4 connections
# for up to 1000 scopes (bench/scale: 500 scopes on 4 connections). Raising the
# limit instead also works:
# limits {
#   http_max_conns_per_client = 1000
# }
