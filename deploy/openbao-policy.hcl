# Least-privilege OpenBao policy for bao-kms-provider (mount `transit`, key `kms`).
# Render for other names with: bao-kms-provider's manifests.openbao_policy(mount, key).
path "transit/encrypt/kms" {
  capabilities = ["update"]
}
path "transit/decrypt/kms" {
  capabilities = ["update"]
}
path "transit/keys/kms" {
  capabilities = ["read"]
}
path "transit/config/keys" {
  capabilities = ["read"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
