#!/bin/sh
# A client.authentication.k8s.io/v1 exec plugin for tests. It records each
# run and what it was given, then prints an ExecCredential.
if [ -n "$PLUGIN_LOG" ]; then
	printf '%s|%s|%s|%s\n' "$1" "$2" "$PLUGIN_SUFFIX" "$KUBERNETES_EXEC_INFO" >> "$PLUGIN_LOG"
fi
n=$( [ -n "$PLUGIN_LOG" ] && wc -l < "$PLUGIN_LOG" | tr -d ' ' || echo 0)
case "$PLUGIN_MODE" in
fail)
	echo "plugin says no" >&2
	exit 3 ;;
garbage)
	echo "not json"
	exit 0 ;;
cert)
	printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientCertificateData":"CERT","clientKeyData":"KEY"}}\n'
	exit 0 ;;
esac
if [ -n "$PLUGIN_EXPIRY" ]; then
	exp=",\"expirationTimestamp\":\"$PLUGIN_EXPIRY\""
else
	exp=""
fi
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"tok-%s-%s"%s}}\n' "$PLUGIN_SUFFIX" "$n" "$exp"
