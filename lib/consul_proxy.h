/*
 * The [consul] proxy setting: which proxy URLs are accepted, and how one
 * is shown in messages and logs (never with its user info).
 */
#ifndef PGBC_CONSUL_PROXY_H
#define PGBC_CONSUL_PROXY_H

#include <stdbool.h>
#include <stddef.h>

/*
 * "" (no proxy), or scheme://[user[:password]@]host:port[/] with scheme
 * http, https, socks5 or socks5h (lower case), host a hostname, IPv4 or
 * [IPv6] literal and an explicit port; user info percent-encoded.
 * Messages say what is wrong and never quote the value.
 */
bool consul_proxy_check(const char *proxy, char *err, size_t errlen);

/*
 * proxy without its user info, printable (see errbuf_printable), for
 * messages and logs: "http://u:p@h:3128" -> "http://h:3128".
 */
void consul_proxy_shown(const char *proxy, char *out, size_t outlen);

#endif
