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
# and [consul] url = https://127.0.0.1:8501 with ca_file in pgbouncer.ini
