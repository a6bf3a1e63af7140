"""The setup scripts a customer runs to let this control plane into their GCP project or Azure
subscription, by federation: no key or secret ever leaves their cloud.

Scripts are plain templates (no cloud call, so the API may build them). Every command is
idempotent (`|| true` on creates, bindings that may already exist), so running a script twice
is harmless. The Azure script reports the app's client ID back through a callback URL with a
per-account token; the stored script holds a placeholder, and the token is filled in only when
the script is shown.
"""

from __future__ import annotations

import shlex

GCP_ROLES = {
    "read": ("roles/container.viewer", "roles/compute.viewer"),
    "manage": (
        "roles/container.admin",
        "roles/compute.networkAdmin",
        "roles/iam.serviceAccountUser",
        "roles/resourcemanager.projectIamAdmin",
    ),
}
AZURE_ROLES = {
    "read": ("Azure Kubernetes Service Cluster User Role", "Reader"),
    "manage": ("Azure Kubernetes Service Contributor Role", "Network Contributor", "Managed Identity Operator"),
}
CALLBACK_TOKEN_PLACEHOLDER = "__CLUSTERFLOW_CALLBACK_TOKEN__"  # noqa: S105 - a placeholder, not a secret


def short_id(account_id: str) -> str:
    return account_id.lower().replace("_", "")[-10:]


def gcp_identity(account_id: str, project_id: str, project_number: str) -> dict[str, str]:
    short = short_id(account_id)
    pool, provider = f"clusterflow-{short}", "clusterflow-oidc"
    return {
        "projectId": project_id,
        "projectNumber": project_number,
        "poolId": pool,
        "providerId": provider,
        "serviceAccountEmail": f"clusterflow-{short}@{project_id}.iam.gserviceaccount.com",
        "audience": (
            f"//iam.googleapis.com/projects/{project_number}/locations/global/workloadIdentityPools/{pool}"
            f"/providers/{provider}"
        ),
    }


def gcp_script(identity: dict[str, str], issuer: str, subject: str, level: str, cluster_name: str) -> str:
    q = shlex.quote
    roles = " ".join(GCP_ROLES[level])
    member = (
        f"principal://iam.googleapis.com/projects/{identity['projectNumber']}/locations/global/"
        f"workloadIdentityPools/{identity['poolId']}/subject/{subject}"
    )
    return f"""#!/usr/bin/env bash
# clusterflow cloud connect: GCP project {identity["projectId"]} for cluster {cluster_name} ({level} access).
# Run in Cloud Shell. Creates a Workload Identity pool and OIDC provider trusting clusterflow's
# issuer for one subject, and a service account clusterflow may impersonate. No key is created.
set -euo pipefail
PROJECT_ID={q(identity["projectId"])}
POOL_ID={q(identity["poolId"])}
PROVIDER_ID={q(identity["providerId"])}
SA_EMAIL={q(identity["serviceAccountEmail"])}
gcloud config set project "$PROJECT_ID"
gcloud services enable container.googleapis.com iam.googleapis.com iamcredentials.googleapis.com sts.googleapis.com
gcloud iam workload-identity-pools create "$POOL_ID" --location=global --display-name="clusterflow" || true
gcloud iam workload-identity-pools providers create-oidc "$PROVIDER_ID" --location=global \\
  --workload-identity-pool="$POOL_ID" --issuer-uri={q(issuer)} \\
  --attribute-mapping="google.subject=assertion.sub" \\
  --attribute-condition={q(f'assertion.sub == "{subject}"')} || true
gcloud iam service-accounts create "${{SA_EMAIL%%@*}}" --display-name="clusterflow {cluster_name}" || true
for role in {roles}; do
  gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="serviceAccount:$SA_EMAIL" \\
    --role="$role" --condition=None >/dev/null
done
gcloud iam service-accounts add-iam-policy-binding "$SA_EMAIL" --role=roles/iam.workloadIdentityUser \\
  --member={q(member)} >/dev/null
echo "clusterflow: project $PROJECT_ID is set up; the connection completes within a minute."
"""


def azure_script(
    account_id: str,
    subscription_id: str,
    resource_group: str,
    issuer: str,
    subject: str,
    level: str,
    cluster_name: str,
    callback_url: str,
) -> str:
    q = shlex.quote
    short = short_id(account_id)
    scope = f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
    credential = (
        f'{{"name":"clusterflow-{short}","issuer":"{issuer}","subject":"{subject}",'
        '"audiences":["api://AzureADTokenExchange"]}'
    )
    roles = "\n".join(
        f'az role assignment create --assignee "$APP_ID" --role {q(role)} --scope {q(scope)} >/dev/null || true'
        for role in AZURE_ROLES[level]
    )
    payload = (
        f'{{\\"token\\": \\"{CALLBACK_TOKEN_PLACEHOLDER}\\", '
        '\\"tenantId\\": \\"$TENANT_ID\\", \\"clientId\\": \\"$APP_ID\\"}'
    )
    report = f"curl -fsS -X POST {q(callback_url)} -H 'Content-Type: application/json' -d \"{payload}\""
    return f"""#!/usr/bin/env bash
# clusterflow cloud connect: Azure subscription {subscription_id}, resource group {resource_group},
# for cluster {cluster_name} ({level} access). Run in Azure Cloud Shell. Registers an application
# with a federated identity credential trusting clusterflow's issuer for one subject. No secret.
set -euo pipefail
az account set --subscription {q(subscription_id)}
APP_ID=$(az ad app list --display-name {q(f"clusterflow-{short}")} --query "[0].appId" -o tsv)
if [ -z "$APP_ID" ]; then
  APP_ID=$(az ad app create --display-name {q(f"clusterflow-{short}")} --query appId -o tsv)
fi
az ad sp show --id "$APP_ID" >/dev/null 2>&1 || az ad sp create --id "$APP_ID" >/dev/null
az ad app federated-credential create --id "$APP_ID" --parameters {q(credential)} >/dev/null || true
{roles}
TENANT_ID=$(az account show --query tenantId -o tsv)
{report}
echo "clusterflow: subscription set up; the connection completes within a minute."
"""
