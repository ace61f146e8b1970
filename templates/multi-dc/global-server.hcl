# Consul server of the "global" datacenter (Consul 1.8 syntax): Patroni's DCS
# for every site (leader keys, member records, sessions).  Run three, one per
# site and a third elsewhere, so that losing a site keeps a quorum.
# Replace @ENCRYPT_KEY@ with the output of `consul keygen`, the same key in
# every file of this folder: the WAN pool joins the servers of all datacenters.
datacenter = "global"
# the ACL authority: policies and (global) tokens are made here and
# replicated to dc1 and dc2
primary_datacenter = "global"
node_name = "consul-global-1"
data_dir = "/var/lib/consul"
server = true
bootstrap_expect = 3
client_addr = "127.0.0.1"
# bind_addr = "10.0.0.11"    # when the host has more than one private address
encrypt = "@ENCRYPT_KEY@"
retry_join = ["consul-global-1.example", "consul-global-2.example", "consul-global-3.example"]
# the site servers: one reachable server of each datacenter is enough to
# join the WAN pool, all of them keep it joined
retry_join_wan = ["consul-dc1-1.example", "consul-dc1-2.example", "consul-dc1-3.example",
                  "consul-dc2-1.example", "consul-dc2-2.example", "consul-dc2-3.example"]
acl {
  enabled = true
  default_policy = "deny"
  down_policy = "extend-cache"
  # set the agent token with `consul acl set-agent-token agent <token>`
  enable_token_persistence = true
}
# Between datacenters the servers need TCP 8300 (RPC) and TCP/UDP 8302 (WAN
# gossip); within one, TCP/UDP 8301 (LAN gossip) from every agent.
# TLS for RPC (within and across datacenters): a certificate for
# server.global.consul, then
# ca_file = "/etc/consul.d/ca.pem"
# cert_file = "/etc/consul.d/server.pem"
# key_file = "/etc/consul.d/server-key.pem"
# verify_incoming_rpc = true
# verify_outgoing = true
# verify_server_hostname = true
# https for the local API as in ../consul.hcl: ports { https = 8501 }.
