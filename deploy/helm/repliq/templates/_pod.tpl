{{/* The pod template shared by the DaemonSet and the StatefulSet. */}}
{{- define "repliq.podTemplate" -}}
{{- $sts := include "repliq.isStatefulSet" . -}}
{{- $dataPath := .Values.config.queue.persistence.path -}}
metadata:
  labels:
    {{- include "repliq.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    kubectl.kubernetes.io/default-container: repliqd
    # Rolls the pods when the configuration changes.
    checksum/config: {{ include "repliq.config" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "repliq.serviceAccountName" . }}
  # repliqd needs its token for discovery and leases.
  automountServiceAccountToken: true
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ include "repliq.terminationGracePeriodSeconds" . }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- else if and $sts (eq .Values.workload.podAntiAffinity "hard") }}
  affinity:
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "repliq.selectorLabels" . | nindent 14 }}
  {{- else if and $sts (eq .Values.workload.podAntiAffinity "soft") }}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "repliq.selectorLabels" . | nindent 16 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if or (and (not $sts) .Values.dataDir.prepare.enabled) .Values.extraInitContainers }}
  initContainers:
    {{- if and (not $sts) .Values.dataDir.prepare.enabled }}
    # The kubelet creates a missing hostPath directory as root:root 0755: hand it to the repliq
    # user and group (setgid, group-writable) once. Never recurses into the queues.
    - name: prepare-data-dir
      image: {{ .Values.dataDir.prepare.image }}
      imagePullPolicy: {{ .Values.dataDir.prepare.pullPolicy }}
      command:
        - sh
        - -c
        - >-
          d={{ $dataPath }};
          [ "$(stat -c %u:%g "$d")" = {{ .Values.podSecurityContext.runAsUser }}:{{ .Values.podSecurityContext.runAsGroup }} ] ||
          chown {{ .Values.podSecurityContext.runAsUser }}:{{ .Values.podSecurityContext.runAsGroup }} "$d";
          chmod 2775 "$d"
      securityContext:
        runAsNonRoot: false
        runAsUser: 0
        runAsGroup: 0
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: ["ALL"]
          add: ["CHOWN", "FOWNER", "FSETID"]
      {{- with .Values.dataDir.prepare.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: data
          mountPath: {{ $dataPath }}
    {{- end }}
    {{- with .Values.extraInitContainers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  containers:
    - name: repliqd
      image: {{ include "repliq.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config
        - /etc/repliq/config.yaml
        - --log-format
        - {{ .Values.logFormat }}
        {{- with .Values.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      env:
        # repliqd's identity among its peers: the node for a DaemonSet (the journals live on the
        # node), the pod for a StatefulSet (the journals live on the pod's claim).
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: {{ ternary "metadata.name" "spec.nodeName" (eq $sts "true") }}
        - name: K8S_NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        - name: REPLIQ_LOG
          value: {{ .Values.logLevel | quote }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: grpc
          containerPort: {{ include "repliq.grpcPort" . }}
          protocol: TCP
        - name: http-metrics
          containerPort: {{ include "repliq.httpPort" . }}
          protocol: TCP
      {{- with .Values.startupProbe }}
      startupProbe:
        {{- include "repliq.probe" (list . $.Values.httpTls.enabled) | nindent 8 }}
      {{- end }}
      {{- with .Values.livenessProbe }}
      livenessProbe:
        {{- include "repliq.probe" (list . $.Values.httpTls.enabled) | nindent 8 }}
      {{- end }}
      {{- with .Values.readinessProbe }}
      readinessProbe:
        {{- include "repliq.probe" (list . $.Values.httpTls.enabled) | nindent 8 }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/repliq
          readOnly: true
        - name: data
          mountPath: {{ $dataPath }}
        {{- if .Values.tls.enabled }}
        # ca.crt, tls.crt, tls.key: config.yaml's server.tls (re-read when they change).
        - name: tls
          mountPath: {{ .Values.tls.mountPath }}
          readOnly: true
        {{- end }}
        {{- if .Values.httpAuth.enabled }}
        # The HTTP port's bearer token: config.yaml's server.http_auth (re-read when it changes).
        - name: http-auth
          mountPath: {{ .Values.httpAuth.mountPath }}
          readOnly: true
        {{- end }}
        {{- if .Values.httpTls.enabled }}
        # The HTTP port's certificate: config.yaml's server.http_tls (re-read when it changes).
        - name: https
          mountPath: {{ .Values.httpTls.mountPath }}
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    {{- with .Values.extraContainers }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "repliq.configMapName" . }}
    {{- if not $sts }}
    - name: data
      hostPath:
        path: {{ .Values.dataDir.hostPath }}
        type: DirectoryOrCreate
    {{- end }}
    {{- if and .Values.tls.enabled (eq .Values.tls.source "csi") }}
    # One certificate per pod from cert-manager's csi-driver, its DNS name the pod's name
    # (NODE_NAME of a StatefulSet pod); renewed in place before it expires.
    {{- $issuer := include "repliq.tlsIssuerRef" . | fromYaml }}
    - name: tls
      csi:
        driver: csi.cert-manager.io
        readOnly: true
        volumeAttributes:
          csi.cert-manager.io/issuer-name: {{ $issuer.name }}
          csi.cert-manager.io/issuer-kind: {{ $issuer.kind }}
          csi.cert-manager.io/issuer-group: {{ $issuer.group }}
          csi.cert-manager.io/dns-names: ${POD_NAME}
          csi.cert-manager.io/duration: {{ .Values.tls.certManager.duration }}
          csi.cert-manager.io/renew-before: {{ .Values.tls.certManager.renewBefore }}
          csi.cert-manager.io/key-usages: digital signature,key encipherment,server auth,client auth
          csi.cert-manager.io/fs-group: {{ .Values.podSecurityContext.runAsGroup | quote }}
    {{- else if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ include "repliq.tlsSecretName" . }}
        defaultMode: 0440
        items:
          - {key: ca.crt, path: ca.crt}
          - {key: tls.crt, path: tls.crt}
          - {key: tls.key, path: tls.key}
    {{- end }}
    {{- if .Values.httpAuth.enabled }}
    - name: http-auth
      secret:
        secretName: {{ .Values.httpAuth.secretName }}
        defaultMode: 0440
        items:
          - {key: {{ .Values.httpAuth.key }}, path: token}
    {{- end }}
    {{- if .Values.httpTls.enabled }}
    - name: https
      secret:
        secretName: {{ required "httpTls.secretName is required when httpTls.enabled" .Values.httpTls.secretName }}
        defaultMode: 0440
        items:
          - {key: tls.crt, path: tls.crt}
          - {key: tls.key, path: tls.key}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
