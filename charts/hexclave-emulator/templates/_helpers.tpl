{{- define "hexclave-emulator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hexclave-emulator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "hexclave-emulator.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "hexclave-emulator.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hexclave-emulator.labels" -}}
app.kubernetes.io/name: {{ include "hexclave-emulator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "hexclave-emulator.selector" -}}
app.kubernetes.io/name: {{ include "hexclave-emulator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "hexclave-emulator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hexclave-emulator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hexclave-emulator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "hexclave-emulator.leaseName" -}}
{{- printf "%s-leader" (include "hexclave-emulator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The controller's config file (src/controller/options.ts). */}}
{{- /* Whether the controller watches its Secrets (values.yaml: controller.watchSecrets). */ -}}
{{- define "hexclave-emulator.watchSecrets" -}}
{{- $w := .Values.controller.watchSecrets -}}
{{- if or (eq $w "always") (and (eq $w "namespaced") .Values.controller.watchNamespace) -}}true{{- else -}}false{{- end -}}
{{- end -}}

{{- define "hexclave-emulator.controllerConfig" -}}
{{- $c := .Values.controller -}}
{{- $a := .Values.agent -}}
{{- /* A null here would reach the controller, which needs a number (its default is 65532). */ -}}
{{- if or (kindIs "invalid" $a.runAsUser) (kindIs "invalid" $a.runAsGroup) -}}
{{- fail "agent.runAsUser and agent.runAsGroup must be numbers (0 runs the agent as root)" -}}
{{- end -}}
{{- /* runc's device cgroup refuses a hostPath /dev/kvm to an unprivileged container. */ -}}
{{- if and (eq $a.kvm.mode "host-path") (not $a.privileged) -}}
{{- fail "agent.kvm.mode=host-path needs agent.privileged=true (an unprivileged container may not open a hostPath /dev/kvm); or use device-plugin" -}}
{{- end -}}
{{- $agent := dict
  "image" (include "hexclave-emulator.image" .)
  "imagePullPolicy" .Values.image.pullPolicy
  "command" $a.command
  "args" $a.args
  "port" $a.port
  "storeHostPath" $a.store.hostPath
  "storeMountPath" $a.store.hostPath
  "kvm" $a.kvm
  "privileged" $a.privileged
  "runAsNonRoot" $a.runAsNonRoot
  "runAsUser" $a.runAsUser
  "runAsGroup" $a.runAsGroup
  "memoryOverheadMiB" $a.memoryOverheadMiB
  "cpuRequestPercent" $a.cpuRequestPercent
  "stopGraceSec" $a.stopGraceSec
  "nodeSelector" $a.nodeSelector
  "tolerations" $a.tolerations
-}}
{{- if $a.priorityClassName -}}{{- $_ := set $agent "priorityClassName" $a.priorityClassName -}}{{- end -}}
{{- if .Values.warmup.enabled -}}{{- $_ := set $agent "preferWarmNodesIn" .Release.Namespace -}}{{- end -}}
{{- if not (kindIs "invalid" $a.fsGroup) -}}{{- $_ := set $agent "fsGroup" $a.fsGroup -}}{{- end -}}
{{- $cfg := dict
  "namespace" .Release.Namespace
  "watchNamespace" $c.watchNamespace
  "workers" $c.workers
  "resyncSec" $c.resyncSec
  "rollout" (dict "maxUnavailable" $c.rollout.maxUnavailable)
  "forceDeleteAfterSec" $c.forceDeleteAfterSec
  "watchSecrets" (include "hexclave-emulator.watchSecrets" . | eq "true")
  "clusterDomain" $c.clusterDomain
  "leaderElection" (dict
    "enabled" $c.leaderElection.enabled
    "leaseName" (include "hexclave-emulator.leaseName" .)
    "leaseDurationSec" $c.leaderElection.leaseDurationSec
    "renewDeadlineSec" $c.leaderElection.renewDeadlineSec
    "retryPeriodSec" $c.leaderElection.retryPeriodSec)
  "http" (dict "host" "0.0.0.0" "port" $c.httpPort)
  "agent" $agent
-}}
{{- toPrettyJson $cfg -}}
{{- end -}}
