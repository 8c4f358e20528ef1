{{/* Names, labels and the values derived from others. */}}

{{- define "repliq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name: the release name, prefixed with the chart name unless it holds it. */}}
{{- define "repliq.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "repliq.headlessName" -}}
{{- printf "%s-headless" (include "repliq.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{- define "repliq.configMapName" -}}
{{- printf "%s-config" (include "repliq.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{/* The client Services (clients.enabled): every node, and the node's own daemon. */}}
{{- define "repliq.clientServiceName" -}}
{{- printf "%s-client" (include "repliq.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{- define "repliq.clientLocalServiceName" -}}
{{- printf "%s-client-local" (include "repliq.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}

{{- define "repliq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "repliq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "repliq.labels" -}}
{{ include "repliq.selectorLabels" . }}
app.kubernetes.io/component: node
app.kubernetes.io/part-of: repliq
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "repliq.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "repliq.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "repliq.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "repliq.isStatefulSet" -}}
{{- if eq .Values.workload.kind "StatefulSet" -}}true{{- end -}}
{{- end -}}

{{/* The port of a listen address: "0.0.0.0:31337" and "[::]:31337" both give 31337. */}}
{{- define "repliq.portOf" -}}
{{- $port := . | toString | splitList ":" | last -}}
{{- if not (regexMatch "^[0-9]+$" $port) -}}
{{- fail (printf "config.server: %q has no port" (toString .)) -}}
{{- end -}}
{{- $port -}}
{{- end -}}

{{- define "repliq.grpcPort" -}}
{{- include "repliq.portOf" .Values.config.server.grpc_listen -}}
{{- end -}}

{{- define "repliq.httpPort" -}}
{{- include "repliq.portOf" .Values.config.server.http_listen -}}
{{- end -}}

{{/* replication.discovery.label_selector: the value, or the selector of this release's pods. */}}
{{- define "repliq.labelSelector" -}}
{{- if .Values.config.replication.discovery.label_selector -}}
{{- .Values.config.replication.discovery.label_selector -}}
{{- else -}}
{{- $sel := include "repliq.selectorLabels" . | fromYaml -}}
{{- $pairs := list -}}
{{- range $k := keys $sel | sortAlpha -}}
{{- $pairs = append $pairs (printf "%s=%s" $k (get $sel $k)) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
{{- end -}}

{{/* The static node list, as a dict with one key: `peers` (the value: the other nodes), or
     `members` (every node, the pod itself included; repliqd drops its own entry by NODE_NAME):
     the `members` value, or for a StatefulSet without either, every pod by its stable DNS name. */}}
{{- define "repliq.staticNodes" -}}
{{- $d := .Values.config.replication.discovery -}}
{{- $peers := $d.peers | default list -}}
{{- $members := $d.members | default list -}}
{{- if $peers -}}
{{- toYaml (dict "peers" $peers) -}}
{{- else if $members -}}
{{- toYaml (dict "members" $members) -}}
{{- else if include "repliq.isStatefulSet" . -}}
{{- $full := include "repliq.fullname" . -}}
{{- $domain := printf "%s.%s.svc.%s" (include "repliq.headlessName" .) .Release.Namespace .Values.clusterDomain -}}
{{- range $i := until (int .Values.workload.replicas) -}}
{{- $members = append $members (dict "name" (printf "%s-%d" $full $i) "address" (printf "%s-%d.%s:%s" $full $i $domain (include "repliq.grpcPort" $))) -}}
{{- end -}}
{{- toYaml (dict "members" $members) -}}
{{- else -}}
{{- toYaml (dict "peers" list) -}}
{{- end -}}
{{- end -}}

{{/* repliqd's config.yaml. Keys the daemon does not know are never emitted (it refuses them). */}}
{{- define "repliq.config" -}}
{{- $c := .Values.config -}}
{{- $d := $c.replication.discovery -}}
{{- $discovery := dict "method" $d.method -}}
{{- if eq $d.method "kubernetes" -}}
{{- $_ := set $discovery "label_selector" (include "repliq.labelSelector" .) -}}
{{- if and .Values.tls.enabled (eq .Values.tls.source "csi") (not (include "repliq.isStatefulSet" .)) -}}
{{- /* A DaemonSet's peers are Kubernetes nodes; their per-pod certificates name the pods. */ -}}
{{- $_ := set $discovery "tls_identity" "pod" -}}
{{- end -}}
{{- else -}}
{{- if $d.label_selector -}}
{{- $_ := set $discovery "label_selector" $d.label_selector -}}
{{- end -}}
{{- range $k, $v := include "repliq.staticNodes" . | fromYaml -}}
{{- $_ := set $discovery $k $v -}}
{{- end -}}
{{- end -}}
{{- $replication := dict "mode" $c.replication.mode "discovery" $discovery -}}
{{- if not (kindIs "invalid" $c.replication.required_acks) -}}
{{- $_ := set $replication "required_acks" (int $c.replication.required_acks) -}}
{{- end -}}
{{- if $c.replication.ack_level -}}
{{- $_ := set $replication "ack_level" $c.replication.ack_level -}}
{{- end -}}
{{- $queue := dict "capacity" (int64 $c.queue.capacity) "persistence" (dict "path" $c.queue.persistence.path) -}}
{{- $server := dict "grpc_listen" (toString $c.server.grpc_listen) "http_listen" (toString $c.server.http_listen) "shutdown_grace_ms" (int64 $c.server.shutdown_grace_ms) -}}
{{- if not (kindIs "invalid" $c.server.failure_linger_ms) -}}
{{- $_ := set $server "failure_linger_ms" (int64 $c.server.failure_linger_ms) -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $dir := trimSuffix "/" .Values.tls.mountPath -}}
{{- $_ := set $server "tls" (dict "ca" (printf "%s/ca.crt" $dir) "cert" (printf "%s/tls.crt" $dir) "key" (printf "%s/tls.key" $dir)) -}}
{{- end -}}
{{- if .Values.httpTls.enabled -}}
{{- $dir := trimSuffix "/" .Values.httpTls.mountPath -}}
{{- $_ := set $server "http_tls" (dict "cert" (printf "%s/tls.crt" $dir) "key" (printf "%s/tls.key" $dir)) -}}
{{- end -}}
{{- if .Values.httpAuth.enabled -}}
{{- $_ := set $server "http_auth" (dict "token_file" (printf "%s/token" (trimSuffix "/" .Values.httpAuth.mountPath)) "metrics_open" .Values.httpAuth.metricsOpen) -}}
{{- end -}}
{{- if .Values.clients.enabled -}}
{{- if .Values.clients.rules -}}
{{- $_ := set $server "clients" (dict "enabled" true "rules" .Values.clients.rules) -}}
{{- else -}}
{{- $_ := set $server "clients" true -}}
{{- end -}}
{{- end -}}
replication:
{{- toYaml $replication | nindent 2 }}
queue:
{{- toYaml $queue | nindent 2 }}
server:
{{- toYaml $server | nindent 2 }}
{{- end -}}

{{/* The Secret holding the node certificate (tls.source secret or certManager). */}}
{{- define "repliq.tlsSecretName" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "repliq.fullname" . | trunc 59 | trimSuffix "-")) -}}
{{- end -}}

{{/* The issuer of the node certificates: tls.certManager.issuerRef, or the chart's own CA. */}}
{{- define "repliq.tlsIssuerRef" -}}
{{- $ref := .Values.tls.certManager.issuerRef | default dict -}}
{{- if $ref.name -}}
{{- toYaml (dict "name" $ref.name "kind" ($ref.kind | default "Issuer") "group" ($ref.group | default "cert-manager.io")) -}}
{{- else -}}
{{- toYaml (dict "name" (printf "%s-ca" (include "repliq.fullname" . | trunc 60 | trimSuffix "-")) "kind" "Issuer" "group" "cert-manager.io") -}}
{{- end -}}
{{- end -}}

{{/* The DNS names of the shared node certificate (tls.source certManager). */}}
{{- define "repliq.tlsDnsNames" -}}
{{- $names := .Values.tls.certManager.dnsNames | default list -}}
{{- if and (not $names) (include "repliq.isStatefulSet" .) -}}
{{- $full := include "repliq.fullname" . -}}
{{- range $i := until (int .Values.workload.replicas) -}}
{{- $names = append $names (printf "%s-%d" $full $i) -}}
{{- end -}}
{{- end -}}
{{- toYaml $names -}}
{{- end -}}

{{/* shutdown_grace_ms rounded up to seconds, plus terminationGraceExtraSeconds. */}}
{{- define "repliq.terminationGracePeriodSeconds" -}}
{{- $drain := div (add (int64 .Values.config.server.shutdown_grace_ms) 999) 1000 -}}
{{- add $drain (int64 .Values.terminationGraceExtraSeconds) -}}
{{- end -}}

{{/* Refuses value combinations that would render a broken release. */}}
{{- define "repliq.validate" -}}
{{- if not (has .Values.workload.kind (list "DaemonSet" "StatefulSet")) -}}
{{- fail (printf "workload.kind: %q is neither DaemonSet nor StatefulSet" .Values.workload.kind) -}}
{{- end -}}
{{- if and .Values.config.replication.discovery.peers .Values.config.replication.discovery.members -}}
{{- fail "config.replication.discovery: set peers (the other nodes) or members (every node, each pod included), not both" -}}
{{- end -}}
{{- if eq (include "repliq.grpcPort" .) (include "repliq.httpPort" .) -}}
{{- fail "config.server: grpc_listen and http_listen must use different ports" -}}
{{- end -}}
{{- if and .Values.tls.enabled (eq .Values.tls.source "csi") (not (include "repliq.isStatefulSet" .)) (ne .Values.config.replication.discovery.method "kubernetes") -}}
{{- fail "tls.source csi with a DaemonSet needs discovery method kubernetes: the csi-driver names a certificate after the pod, and only the Kubernetes API tells which pod runs on which node" -}}
{{- end -}}
{{- if and .Values.tls.enabled (eq .Values.tls.source "certManager") (not (include "repliq.isStatefulSet" .)) (not .Values.tls.certManager.dnsNames) -}}
{{- fail "tls.source certManager with a DaemonSet: list the Kubernetes node names in tls.certManager.dnsNames (each node's NODE_NAME must be in the certificate)" -}}
{{- end -}}
{{- if and .Values.tls.enabled (hasPrefix "/etc/repliq/" (printf "%s/" (trimSuffix "/" .Values.tls.mountPath))) -}}
{{- fail "tls.mountPath: not under /etc/repliq (the read-only ConfigMap mount)" -}}
{{- end -}}
{{- if and .Values.httpAuth.enabled (not .Values.httpAuth.secretName) -}}
{{- fail "httpAuth.secretName: required by httpAuth.enabled (a Secret holding the bearer token)" -}}
{{- end -}}
{{- if and .Values.httpAuth.enabled (hasPrefix "/etc/repliq/" (printf "%s/" (trimSuffix "/" .Values.httpAuth.mountPath))) -}}
{{- fail "httpAuth.mountPath: not under /etc/repliq (the read-only ConfigMap mount)" -}}
{{- end -}}
{{- if and .Values.clients.rules (not .Values.tls.enabled) -}}
{{- fail "clients.rules: need tls.enabled: without mutual TLS a client has no certificate, so no identity a rule could match (docs/CLIENTS.md, \"Authorization\")" -}}
{{- end -}}
{{- if and .Values.clients.rules (not .Values.clients.enabled) -}}
{{- fail "clients.rules: set clients.enabled too (the rules apply to the client service, which is off)" -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) -}}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable, not both" -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable) (kindIs "invalid" .Values.podDisruptionBudget.minAvailable) -}}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable" -}}
{{- end -}}
{{- end -}}

{{/*
A probe from values: with httpTls on, its httpGet gets scheme HTTPS (unless it names one).
Arguments: (list probe httpTlsEnabled).
*/}}
{{- define "repliq.probe" -}}
{{- $probe := deepCopy (index . 0) -}}
{{- if and (index . 1) $probe.httpGet (not $probe.httpGet.scheme) -}}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" -}}
{{- end -}}
{{- toYaml $probe -}}
{{- end -}}
