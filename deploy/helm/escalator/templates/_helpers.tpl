{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "escalator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "escalator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "escalator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels common to every object. */}}
{{- define "escalator.labels" -}}
helm.sh/chart: {{ include "escalator.chart" . }}
app.kubernetes.io/name: {{ include "escalator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: escalator
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "worker"). */}}
{{- define "escalator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "escalator.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's objects and pods. */}}
{{- define "escalator.componentLabels" -}}
{{ include "escalator.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "escalator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "escalator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "escalator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The content of the policy file: policy.content, or the built-in default policy. */}}
{{- define "escalator.policy" -}}
{{- if .Values.policy.content }}
{{- .Values.policy.content }}
{{- else }}
{{- .Files.Get "files/policy.yaml" }}
{{- end }}
{{- end }}

{{- define "escalator.webhookTargets" -}}
{{- toYaml (dict "targets" .Values.sinks.webhook.targets) }}
{{- end }}

{{- define "escalator.kafkaUsesSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{- define "escalator.kafkaUsesTls" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end }}
{{- end }}

{{/*
Checks of combinations the schema cannot express; a mistake stops rendering with one line.
*/}}
{{- define "escalator.validate" -}}
{{- $v := .Values }}
{{- if gt (int $v.worker.replicas) (int $v.kafka.partitions) }}
{{- fail (printf "worker.replicas (%d) must not exceed kafka.partitions (%d): a worker beyond the partition count gets no partition and sits idle" (int $v.worker.replicas) (int $v.kafka.partitions)) }}
{{- end }}
{{- if include "escalator.kafkaUsesSasl" . }}
{{- if not $v.kafka.sasl.username }}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.sasl.username" $v.kafka.securityProtocol) }}
{{- end }}
{{- if not $v.kafka.sasl.passwordSecret.name }}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.sasl.passwordSecret.name (an existing Secret holding the password)" $v.kafka.securityProtocol) }}
{{- end }}
{{- end }}
{{- if ne (empty $v.kafka.tls.certSecret.name) (empty $v.kafka.tls.keySecret.name) }}
{{- fail "kafka.tls.certSecret and kafka.tls.keySecret go together (client certificate and its key)" }}
{{- end }}
{{- if and (not (include "escalator.kafkaUsesTls" .)) (or $v.kafka.tls.caSecret.name $v.kafka.tls.certSecret.name) }}
{{- fail (printf "kafka.tls.* is set but kafka.securityProtocol=%s does not use TLS (SSL or SASL_SSL)" $v.kafka.securityProtocol) }}
{{- end }}
{{- if and $v.ingest.enabled (not $v.ingest.tokenSecret.name) (not $v.ingest.tokensFileSecret.name) }}
{{- fail "ingest needs ingest.tokenSecret.name or ingest.tokensFileSecret.name (per-source tokens): it refuses unauthenticated requests" }}
{{- end }}
{{- if and $v.networkPolicy.enabled $v.metrics.serviceMonitor.enabled (empty $v.networkPolicy.metricsFrom) }}
{{- fail "metrics.serviceMonitor.enabled with networkPolicy.enabled needs networkPolicy.metricsFrom (the Prometheus pods or namespace), or nothing can scrape" }}
{{- end }}
{{- with $v.sinks.helpdesk }}{{ if .enabled }}
{{- if not (regexMatch "^https?://[^/:@]+" .url) }}
{{- fail "sinks.helpdesk.enabled needs sinks.helpdesk.url, the desk's http(s) base URL (e.g. https://acme.zendesk.com)" }}
{{- end }}
{{- if and (eq .kind "zendesk") (empty .zendeskEmail) }}
{{- fail "sinks.helpdesk.kind=zendesk needs sinks.helpdesk.zendeskEmail (the agent the API token belongs to)" }}
{{- end }}
{{- end }}{{ end }}
{{- if and $v.sinks.webhook.enabled (empty $v.sinks.webhook.targets) }}
{{- fail "sinks.webhook.enabled needs at least one target in sinks.webhook.targets (or set sinks.webhook.enabled=false)" }}
{{- end }}
{{- /* What the sink's targets-file parser checks beyond the schema (connectors/sinks/webhook_targets.py). */}}
{{- $names := dict }}
{{- range $i, $t := $v.sinks.webhook.targets }}
{{- if hasKey $names $t.name }}
{{- fail (printf "sinks.webhook.targets[%d].name: '%s' is used twice; names must differ" $i $t.name) }}
{{- end }}
{{- $_ := set $names $t.name true }}
{{- if lt (float64 (default 60.0 $t.backoff_cap_s)) (float64 (default 0.5 $t.backoff_base_s)) }}
{{- fail (printf "sinks.webhook.targets[%d] (%s): backoff_cap_s must not be below backoff_base_s" $i $t.name) }}
{{- end }}
{{- end }}
{{- with $v.schemaRegistry }}
{{- if and .passwordSecret.name (not .username) }}
{{- fail "schemaRegistry.passwordSecret needs schemaRegistry.username (HTTP basic auth)" }}
{{- end }}
{{- if ne (empty .tls.certSecret.name) (empty .tls.keySecret.name) }}
{{- fail "schemaRegistry.tls.certSecret and schemaRegistry.tls.keySecret go together (client certificate and its key)" }}
{{- end }}
{{- if and (or .username .passwordSecret.name .tls.caSecret.name .tls.certSecret.name) (not .url) }}
{{- fail "schemaRegistry credentials are set but schemaRegistry.url is empty" }}
{{- end }}
{{- end }}
{{- if $v.alerts.enabled }}
{{- $ops := get (include "escalator.policy" . | fromYaml) "ops_alerts" }}
{{- if and (kindIs "map" $ops) (hasKey $ops "enabled") (not $ops.enabled) }}
{{- fail "alerts.enabled needs the policy's ops_alerts.enabled: the policy (policy.content) turns the queue ops alerts off; turn them on there, or set alerts.enabled=false" }}
{{- end }}
{{- end }}
{{- if and $v.board.enabled (not $v.sinks.redis.enabled) }}
{{- fail "board.enabled needs sinks.redis.enabled: the board shows what the Redis sink writes" }}
{{- end }}
{{- if and $v.redis.caSecret.name (not (hasPrefix "rediss://" $v.redis.url)) }}
{{- fail "redis.caSecret is set but redis.url does not start with rediss://" }}
{{- end }}
{{- end }}

{{/*
Secret-backed files of one component: (dict "root" $ "component" "worker").
A YAML list of {volume, secret, key, dir, file, env}; the pod mounts key of secret at
dir/file (read-only) and sets env to that path.
*/}}
{{- define "escalator.secretFiles" -}}
{{- $v := .root.Values }}
{{- $c := .component }}
{{- $base := "/var/run/secrets/escalator" }}
{{- $out := list }}
{{- /* Only what each process uses: the board never talks to Kafka, the worker never to Redis. */}}
{{- $kafka := has $c (list "worker" "ingest" "sink-redis" "sink-webhook" "sink-helpdesk" "alerts") }}
{{- if and $kafka (include "escalator.kafkaUsesSasl" .root) }}
{{- $out = append $out (dict "volume" "kafka-sasl" "secret" $v.kafka.sasl.passwordSecret.name "key" $v.kafka.sasl.passwordSecret.key "file" "password" "env" "ESCALATOR_KAFKA_SASL_PASSWORD_FILE") }}
{{- end }}
{{- if and $kafka (include "escalator.kafkaUsesTls" .root) }}
{{- with $v.kafka.tls.caSecret }}{{ if .name }}
{{- $out = append $out (dict "volume" "kafka-tls-ca" "secret" .name "key" .key "file" "ca.crt" "env" "ESCALATOR_KAFKA_SSL_CA_FILE") }}
{{- end }}{{ end }}
{{- with $v.kafka.tls.certSecret }}{{ if .name }}
{{- $out = append $out (dict "volume" "kafka-tls-cert" "secret" .name "key" .key "file" "tls.crt" "env" "ESCALATOR_KAFKA_SSL_CERT_FILE") }}
{{- end }}{{ end }}
{{- with $v.kafka.tls.keySecret }}{{ if .name }}
{{- $out = append $out (dict "volume" "kafka-tls-key" "secret" .name "key" .key "file" "tls.key" "env" "ESCALATOR_KAFKA_SSL_KEY_FILE") }}
{{- end }}{{ end }}
{{- end }}
{{- if and $kafka $v.schemaRegistry.url }}
{{- with $v.schemaRegistry.passwordSecret }}{{ if .name }}
{{- $out = append $out (dict "volume" "registry-password" "secret" .name "key" .key "file" "password" "env" "ESCALATOR_SCHEMA_REGISTRY_PASSWORD_FILE") }}
{{- end }}{{ end }}
{{- with $v.schemaRegistry.tls.caSecret }}{{ if .name }}
{{- $out = append $out (dict "volume" "registry-tls-ca" "secret" .name "key" .key "file" "ca.crt" "env" "ESCALATOR_SCHEMA_REGISTRY_SSL_CA_FILE") }}
{{- end }}{{ end }}
{{- with $v.schemaRegistry.tls.certSecret }}{{ if .name }}
{{- $out = append $out (dict "volume" "registry-tls-cert" "secret" .name "key" .key "file" "tls.crt" "env" "ESCALATOR_SCHEMA_REGISTRY_SSL_CERT_FILE") }}
{{- end }}{{ end }}
{{- with $v.schemaRegistry.tls.keySecret }}{{ if .name }}
{{- $out = append $out (dict "volume" "registry-tls-key" "secret" .name "key" .key "file" "tls.key" "env" "ESCALATOR_SCHEMA_REGISTRY_SSL_KEY_FILE") }}
{{- end }}{{ end }}
{{- end }}
{{- if has $c (list "ingest" "sink-redis" "board") }}
{{- with $v.redis.passwordSecret }}{{ if .name }}
{{- $out = append $out (dict "volume" "redis-password" "secret" .name "key" .key "file" "password" "env" "ESCALATOR_REDIS_PASSWORD_FILE") }}
{{- end }}{{ end }}
{{- with $v.redis.caSecret }}{{ if .name }}
{{- $out = append $out (dict "volume" "redis-tls-ca" "secret" .name "key" .key "file" "ca.crt" "env" "ESCALATOR_REDIS_SSL_CA_FILE") }}
{{- end }}{{ end }}
{{- end }}
{{- if eq $c "ingest" }}
{{- with $v.ingest.tokenSecret }}{{ if .name }}
{{- $out = append $out (dict "volume" "ingest-token" "secret" .name "key" .key "file" "token" "env" "ESCALATOR_INGEST_TOKEN_FILE") }}
{{- end }}{{ end }}
{{- with $v.ingest.tokensFileSecret }}{{ if .name }}
{{- $out = append $out (dict "volume" "ingest-tokens" "secret" .name "key" .key "file" "tokens.yaml" "env" "ESCALATOR_INGEST_TOKENS_FILE") }}
{{- end }}{{ end }}
{{- with $v.ingest.zendeskSecret }}{{ if .name }}
{{- $out = append $out (dict "volume" "zendesk-webhook-secret" "secret" .name "key" .key "file" "secret" "env" "ESCALATOR_ZENDESK_WEBHOOK_SECRET_FILE") }}
{{- end }}{{ end }}
{{- end }}
{{- if eq $c "sink-webhook" }}
{{- $out = append $out (dict "volume" "webhook-signing-key" "secret" $v.sinks.webhook.signingKeySecret.name "key" $v.sinks.webhook.signingKeySecret.key "file" "signing-key" "env" "ESCALATOR_WEBHOOK_SIGNING_KEY_FILE") }}
{{- end }}
{{- if eq $c "sink-helpdesk" }}
{{- with $v.sinks.helpdesk }}
{{- if eq .kind "zendesk" }}
{{- $out = append $out (dict "volume" "zendesk-api-token" "secret" .zendeskTokenSecret.name "key" .zendeskTokenSecret.key "file" "api-token" "env" "ESCALATOR_ZENDESK_API_TOKEN_FILE") }}
{{- else }}
{{- $out = append $out (dict "volume" "freshdesk-api-key" "secret" .freshdeskKeySecret.name "key" .freshdeskKeySecret.key "file" "api-key" "env" "ESCALATOR_FRESHDESK_API_KEY_FILE") }}
{{- end }}
{{- end }}
{{- end }}
{{- range $out }}
{{- $_ := set . "dir" (printf "%s/%s" $base .volume) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
env entries (*_FILE), volumeMounts and volumes for the secret files of a component
((dict "root" $ "component" "worker")); empty output when there are none. Use as
  {{- with include "escalator.secretEnv" $ctx }}{{ . | nindent 12 }}{{ end }}
*/}}
{{- define "escalator.secretEnv" -}}
{{- $out := list }}
{{- range (include "escalator.secretFiles" . | fromYamlArray) }}
{{- $out = append $out (dict "name" .env "value" (printf "%s/%s" .dir .file)) }}
{{- end }}
{{- with $out }}{{ toYaml . }}{{ end }}
{{- end }}

{{- define "escalator.secretMounts" -}}
{{- $out := list }}
{{- range (include "escalator.secretFiles" . | fromYamlArray) }}
{{- $out = append $out (dict "name" .volume "mountPath" .dir "readOnly" true) }}
{{- end }}
{{- with $out }}{{ toYaml . }}{{ end }}
{{- end }}

{{- define "escalator.secretVolumes" -}}
{{- $out := list }}
{{- range (include "escalator.secretFiles" . | fromYamlArray) }}
{{- $item := dict "key" .key "path" .file }}
{{- $out = append $out (dict "name" .volume "secret" (dict "secretName" .secret "defaultMode" 288 "items" (list $item))) }}
{{- end }}
{{- with $out }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* Pod-level settings shared by every pod. */}}
{{- define "escalator.podCommon" -}}
serviceAccountName: {{ include "escalator.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* Image and security settings of every container. */}}
{{- define "escalator.containerBase" -}}
image: {{ include "escalator.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end }}

{{/* containerBase and the shared settings (every container that talks to Kafka). */}}
{{- define "escalator.containerCommon" -}}
{{ include "escalator.containerBase" . }}
envFrom:
  - configMapRef:
      name: {{ include "escalator.fullname" . }}-config
{{- end }}

{{/* The writable /tmp every pod gets (the root filesystem is read-only). */}}
{{- define "escalator.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{/* Annotations rolling every pod when the shared settings change. */}}
{{- define "escalator.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}
