/*
 * Blocking HTTP for pgbouncer-helper: builds URLs and easy handles with
 * lib/consul_client (token header, TLS, proxy, limits), adds Patroni's
 * basic auth and client certificate, and runs one transfer.
 */
#include <stdio.h>
#include <string.h>

#include "errbuf.h"
#include "http.h"

static volatile sig_atomic_t *http_stop_flag;

void
http_set_stop_flag(volatile sig_atomic_t *flag)
{
	http_stop_flag = flag;
}

static int
http_progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
	      curl_off_t ulnow)
{
	return http_stop_flag != NULL && *http_stop_flag ? 1 : 0;
}

/* who a transfer goes to: the settings named in TLS errors, Patroni's basic auth */
struct http_peer {
	const char *tls_settings;	/* "[consul] ca_file, cert_file, key_file" */
	const char *username;		/* NULL or "" = no basic auth */
	const char *password;
};

static const struct http_peer consul_peer = {
	"[consul] ca_file, cert_file, key_file", NULL, NULL
};

/* curl failures that come from the TLS handshake or a certificate */
static bool
http_tls_error(CURLcode rc)
{
	switch (rc) {
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_CRL_BADFILE:
		return true;
	default:
		return false;
	}
}

/* one transfer on settings s to url; errors name the method and the URL */
static bool
http_perform(const struct consul_settings *s, const struct http_peer *peer,
	     const char *method, const char *url, const char *body, long timeout_ms,
	     struct consul_response *resp, char *err, size_t errlen)
{
	CURL *easy;
	struct curl_slist *headers = NULL;
	struct curl_slist *grown;
	char curl_err[CURL_ERROR_SIZE] = "";
	char msg[512];
	CURLcode rc;
	bool ok = false;

	memset(resp, 0, sizeof(*resp));
	easy = curl_easy_init();
	if (easy == NULL) {
		errbuf_set(err, errlen, "%s %s: cannot create a curl handle", method, url);
		return false;
	}
	if (!consul_easy_setup(easy, s, url, timeout_ms, resp, &headers, msg, sizeof(msg))) {
		errbuf_set(err, errlen, "%s %s: %s", method, url, msg);
		goto done;
	}
	if (peer->username != NULL && peer->username[0] != '\0') {
		curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		curl_easy_setopt(easy, CURLOPT_USERNAME, peer->username);
		curl_easy_setopt(easy, CURLOPT_PASSWORD, peer->password);
	}
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, curl_err);
	curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, http_progress);
	if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body ? body : "");
		if (body != NULL) {
			grown = curl_slist_append(headers, "Content-Type: application/json");
			if (grown == NULL) {
				errbuf_set(err, errlen, "out of memory");
				goto done;
			}
			headers = grown;
			curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
		}
	}
	rc = curl_easy_perform(easy);
	if (rc != CURLE_OK) {
		if (rc == CURLE_ABORTED_BY_CALLBACK)
			errbuf_set(err, errlen, "%s %s: interrupted", method, url);
		else if (resp->too_large)
			errbuf_set(err, errlen, "%s %s: answer larger than %d bytes", method, url,
				   CONSUL_BODY_MAX);
		else if (http_tls_error(rc) ||
			 (strncmp(url, "https:", 6) == 0 &&
			  (rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR)))
			/* TLS 1.3 reports a refused client certificate on the first read */
			errbuf_set(err, errlen, "%s %s: %s (TLS: check %s)", method, url,
				   curl_err[0] ? curl_err : curl_easy_strerror(rc),
				   peer->tls_settings);
		else
			errbuf_set(err, errlen, "%s %s: %s", method, url,
				   curl_err[0] ? curl_err : curl_easy_strerror(rc));
		goto done;
	}
	consul_response_finish(easy, resp);
	ok = true;
done:
	if (!ok)
		consul_response_free(resp);
	/* the handle keeps a copy of the password: gone with it */
	curl_easy_cleanup(easy);
	curl_slist_free_all(headers);
	return ok;
}

bool
http_consul(const struct helper_config *cfg, const char *method, const char *path,
	    const char *body, long timeout_ms, struct consul_response *resp,
	    char *err, size_t errlen)
{
	char url[CONSUL_KV_URL_MAX(32)];	/* an API path, a scope's keys the longest */

	memset(resp, 0, sizeof(*resp));
	if (!consul_api_url(&cfg->consul, path, url, sizeof(url), err, errlen))
		return false;
	return http_perform(&cfg->consul, &consul_peer, method, url, body, timeout_ms, resp,
			    err, errlen);
}

bool
http_consul_kv(const struct helper_config *cfg, const char *key, uint64_t index,
	       uint64_t wait_usec, struct consul_response *resp, char *err, size_t errlen)
{
	char url[CONSUL_URL_MAX + 1024];
	long timeout_ms = HTTP_TIMEOUT_MS;

	memset(resp, 0, sizeof(*resp));
	if (index > 0)
		timeout_ms = consul_blocking_timeout_ms(wait_usec);
	if (!consul_kv_url_wait(&cfg->consul, wait_usec, cfg->scope, key, index, false, url,
				sizeof(url), err, errlen))
		return false;
	return http_perform(&cfg->consul, &consul_peer, "GET", url, NULL, timeout_ms, resp,
			    err, errlen);
}

/*
 * method url on a Patroni REST API with the [helper] patroni_* TLS files
 * (no Consul token, no proxy), and basic auth on everything but GET:
 * Patroni asks it only of unsafe calls, and a GET may go to an api_url
 * read from the DCS, which must not learn the password.  An HTTP 401 is
 * an error saying which credentials were missing or refused.
 */
static bool
patroni_perform(const struct helper_config *cfg, const char *method, const char *url,
		const char *body, long timeout_ms, struct consul_response *resp, char *err,
		size_t errlen)
{
	struct consul_settings s;
	bool unsafe = strcmp(method, "GET") != 0;
	struct http_peer peer = {
		"patroni_ca_file, patroni_cert_file, patroni_key_file",
		unsafe ? cfg->patroni_username : NULL, unsafe ? cfg->patroni_password : NULL
	};
	char shown[ERRBUF_VALUE_MAX];

	memset(&s, 0, sizeof(s));
	snprintf(s.ca_file, sizeof(s.ca_file), "%s", cfg->patroni_ca_file);
	snprintf(s.cert_file, sizeof(s.cert_file), "%s", cfg->patroni_cert_file);
	snprintf(s.key_file, sizeof(s.key_file), "%s", cfg->patroni_key_file);
	if (!http_perform(&s, &peer, method, url, body, timeout_ms, resp, err, errlen))
		return false;
	if (resp->status != 401)
		return true;
	if (peer.username == NULL || peer.username[0] == '\0') {
		errbuf_set(err, errlen, "%s %s: patroni answered HTTP 401 (authentication "
			   "required): set patroni_username and patroni_password_file", method, url);
	} else {
		errbuf_printable(cfg->patroni_username, shown, sizeof(shown));
		errbuf_set(err, errlen, "%s %s: patroni answered HTTP 401: it refused "
			   "patroni_username \"%s\" with the password of patroni_password_file",
			   method, url, shown);
	}
	consul_response_free(resp);
	return false;
}

bool
http_patroni(const struct helper_config *cfg, const char *method, const char *path,
	     const char *body, long timeout_ms, struct consul_response *resp,
	     char *err, size_t errlen)
{
	char url[CONSUL_URL_MAX + 256];

	memset(resp, 0, sizeof(*resp));
	if (snprintf(url, sizeof(url), "%s%s", cfg->patroni_url, path) >= (int) sizeof(url)) {
		errbuf_set(err, errlen, "patroni url too long");
		return false;
	}
	return patroni_perform(cfg, method, url, body, timeout_ms, resp, err, errlen);
}

struct json_object *
http_json(const struct consul_response *resp, json_type type, const char *what,
	  char *err, size_t errlen)
{
	struct json_tokener *tok;
	struct json_object *obj;

	if (resp->body == NULL) {
		errbuf_set(err, errlen, "%s: empty answer (HTTP %ld)", what, resp->status);
		return NULL;
	}
	tok = json_tokener_new();
	if (tok == NULL) {
		errbuf_set(err, errlen, "out of memory");
		return NULL;
	}
	obj = json_tokener_parse_ex(tok, resp->body, (int) resp->len);
	if (obj == NULL || json_tokener_get_error(tok) != json_tokener_success) {
		errbuf_set(err, errlen, "%s: answer is not valid JSON (HTTP %ld)", what,
			   resp->status);
		json_object_put(obj);
		json_tokener_free(tok);
		return NULL;
	}
	json_tokener_free(tok);
	if (!json_object_is_type(obj, type)) {
		errbuf_set(err, errlen, "%s: answer is not a JSON %s (HTTP %ld)", what,
			   type == json_type_array ? "array" : "object", resp->status);
		json_object_put(obj);
		return NULL;
	}
	return obj;
}

/* o[key], or NULL when o is NULL or has no such key */
struct json_object *
http_json_member(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (o == NULL || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

/* o[key] as text ("" when absent or null; numbers as written) */
const char *
http_json_text(struct json_object *o, const char *key)
{
	struct json_object *v = http_json_member(o, key);

	if (v == NULL || json_object_is_type(v, json_type_null))
		return "";
	return json_object_get_string(v);
}
