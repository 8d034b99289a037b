// Package deploy holds refgate's deployment files (the container image,
// Kubernetes manifests, Redis configuration, Prometheus alerts, Grafana
// dashboard, systemd unit and nginx snippet) and the tests that render and
// check them against the real binary and the real tools: kustomize,
// promtool, nginx and redis-server. It is a module of its own so that the
// tests' dependencies (k8s.io/api, kustomize, the Prometheus Operator's
// types) stay out of refgate's go.mod.
package deploy
