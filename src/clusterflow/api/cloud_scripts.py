"""The setup scripts a customer runs to let this control plane into their GCP project or Azure
subscription, by federation: no key or secret ever leaves their cloud.

Scripts are plain templates (no cloud call, so the API may build them), written for a customer
who must be able to trust them: `set -euo pipefail`; every prerequisite (CLI installed, logged
in, project or subscription and resource group exist, the caller may grant the roles) is
checked before anything changes; the first failing command stops the script with a message
saying what to fix (an `ERR` trap), so setup never reports success it did not achieve; and
each resource is looked up before it is created, so running a script again is harmless. What
they grant is `contracts/cloud_permissions.py`: roles on the project or resource group, and
acting as the node service account on that one service account only.

The Azure script reports the app's client ID back through a callback URL with a per-account
token, only after every role assignment succeeded; the stored script holds a placeholder, and
the token is filled in only when the script is shown.
"""

from __future__ import annotations

import shlex

from clusterflow.contracts.cloud_permissions import GCP_NODE_SERVICE_ACCOUNT, PERMISSIONS, render

CALLBACK_TOKEN_PLACEHOLDER = "__CLUSTERFLOW_CALLBACK_TOKEN__"  # noqa: S105 - a placeholder, not a secret

# What the caller needs to create the federation and grant the level's roles (checked first).
GCP_SETUP_PERMISSIONS = (
    "iam.serviceAccounts.create",
    "iam.serviceAccounts.setIamPolicy",
    "iam.workloadIdentityPoolProviders.create",
    "iam.workloadIdentityPools.create",
    "resourcemanager.projects.setIamPolicy",
    "serviceusage.services.enable",
)

_PREAMBLE = """set -euo pipefail
fail() {
  echo "clusterflow setup: $*" >&2
  exit 1
}
stopped() {
  echo "clusterflow setup: stopped at line $1: the command above failed, nothing after it ran." >&2
  echo "clusterflow setup: fix what it reports and run this script again (it is safe to re-run)." >&2
}
trap 'stopped "${LINENO}"' ERR
"""


def project_roles(level: str) -> tuple[str, ...]:
    return tuple(g.actions[0] for g in PERMISSIONS["gcp"][level] if g.resources == ("project",))


def service_account_roles(level: str) -> tuple[str, ...]:
    return tuple(g.actions[0] for g in PERMISSIONS["gcp"][level] if g.resources != ("project",))


def azure_roles(level: str) -> tuple[str, ...]:
    return tuple(g.actions[0] for g in PERMISSIONS["azure"][level])


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
    member = (
        f"principal://iam.googleapis.com/projects/{identity['projectNumber']}/locations/global/"
        f"workloadIdentityPools/{identity['poolId']}/subject/{subject}"
    )
    node_sa = render(GCP_NODE_SERVICE_ACCOUNT, project_number=identity["projectNumber"])
    node_sa_line = f"NODE_SA={q(node_sa)}\n" if service_account_roles(level) else ""
    project_bindings = "\n".join(
        f'gcloud projects add-iam-policy-binding "${{PROJECT_ID}}" --member="serviceAccount:${{SA_EMAIL}}" '
        f"--role={q(role)} --condition=None >/dev/null"
        for role in project_roles(level)
    )
    sa_bindings = "\n".join(
        f'gcloud iam service-accounts add-iam-policy-binding "${{NODE_SA}}" \\\n'
        f'  --member="serviceAccount:${{SA_EMAIL}}" --role={q(role)} >/dev/null'
        for role in service_account_roles(level)
    )
    newline = "\n"
    permissions = ",".join(f'\\"{p}\\"' for p in GCP_SETUP_PERMISSIONS)
    return f"""#!/usr/bin/env bash
# clusterflow cloud connect: GCP project {identity["projectId"]} for cluster {cluster_name} ({level} access).
# Run in Cloud Shell. Creates a Workload Identity pool and OIDC provider trusting clusterflow's
# issuer for one subject, and a service account clusterflow may impersonate. No key is created.
# Checks everything it needs before changing anything; safe to run again.
{_PREAMBLE}PROJECT_ID={q(identity["projectId"])}
PROJECT_NUMBER={q(identity["projectNumber"])}
POOL_ID={q(identity["poolId"])}
PROVIDER_ID={q(identity["providerId"])}
SA_EMAIL={q(identity["serviceAccountEmail"])}
{node_sa_line}
# 1. Prerequisites: nothing is changed until all of them hold.
command -v gcloud >/dev/null 2>&1 ||
  fail "gcloud is not installed: run this in Cloud Shell or install the Google Cloud CLI."
command -v curl >/dev/null 2>&1 || fail "curl is not installed: run this in Cloud Shell."
ACCOUNT=$(gcloud auth list --filter=status:ACTIVE --format="value(account)")
[[ -n "${{ACCOUNT}}" ]] || fail "gcloud is not logged in: run 'gcloud auth login' and run this script again."
FOUND_NUMBER=$(gcloud projects describe "${{PROJECT_ID}}" --format="value(projectNumber)") ||
  fail "project ${{PROJECT_ID}} does not exist or ${{ACCOUNT}} cannot see it."
[[ "${{FOUND_NUMBER}}" == "${{PROJECT_NUMBER}}" ]] ||
  fail "project ${{PROJECT_ID}} has number ${{FOUND_NUMBER}}, not ${{PROJECT_NUMBER}}: connect again with its number."
TOKEN=$(gcloud auth print-access-token)
GRANTED=$(curl -fsS -X POST -H "Authorization: Bearer ${{TOKEN}}" -H "Content-Type: application/json" \\
  "https://cloudresourcemanager.googleapis.com/v1/projects/${{PROJECT_ID}}:testIamPermissions" \\
  -d "{{\\"permissions\\": [{permissions}]}}")
for permission in {" ".join(GCP_SETUP_PERMISSIONS)}; do
  [[ "${{GRANTED}}" == *"\\"${{permission}}\\""* ]] ||
    fail "${{ACCOUNT}} lacks ${{permission}} on project ${{PROJECT_ID}}: ask a project owner to run this script."
done

# 2. Changes, each looked up first so a second run changes nothing.
gcloud services enable compute.googleapis.com container.googleapis.com iam.googleapis.com \\
  iamcredentials.googleapis.com sts.googleapis.com --project="${{PROJECT_ID}}"
if ! gcloud iam workload-identity-pools describe "${{POOL_ID}}" --project="${{PROJECT_ID}}" --location=global \\
  >/dev/null 2>&1; then
  gcloud iam workload-identity-pools create "${{POOL_ID}}" --project="${{PROJECT_ID}}" --location=global \\
    --display-name="clusterflow"
fi
PROVIDER_VERB=create-oidc
if gcloud iam workload-identity-pools providers describe "${{PROVIDER_ID}}" --project="${{PROJECT_ID}}" \\
  --location=global --workload-identity-pool="${{POOL_ID}}" >/dev/null 2>&1; then
  PROVIDER_VERB=update-oidc
fi
gcloud iam workload-identity-pools providers "${{PROVIDER_VERB}}" "${{PROVIDER_ID}}" --project="${{PROJECT_ID}}" \\
  --location=global --workload-identity-pool="${{POOL_ID}}" --issuer-uri={q(issuer)} \\
  --attribute-mapping="google.subject=assertion.sub" \\
  --attribute-condition={q(f'assertion.sub == "{subject}"')}
if ! gcloud iam service-accounts describe "${{SA_EMAIL}}" --project="${{PROJECT_ID}}" >/dev/null 2>&1; then
  gcloud iam service-accounts create "${{SA_EMAIL%%@*}}" --project="${{PROJECT_ID}}" \\
    --display-name="clusterflow {cluster_name}"
fi
{project_bindings}
{sa_bindings}{newline if sa_bindings else ""}\
gcloud iam service-accounts add-iam-policy-binding "${{SA_EMAIL}}" --project="${{PROJECT_ID}}" \\
  --role=roles/iam.workloadIdentityUser --member={q(member)} >/dev/null
echo "clusterflow: project ${{PROJECT_ID}} is set up; the connection completes within a minute."
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
        f"""ASSIGNED=$(az role assignment list --assignee "${{APP_ID}}" --role {q(role)} --scope "${{SCOPE}}" \\
  --query "[0].id" -o tsv)
if [[ -z "${{ASSIGNED}}" ]]; then
  az role assignment create --assignee-object-id "${{SP_ID}}" --assignee-principal-type ServicePrincipal \\
    --role {q(role)} --scope "${{SCOPE}}" >/dev/null
fi"""
        for role in azure_roles(level)
    )
    payload = (
        f'{{\\"token\\": \\"{CALLBACK_TOKEN_PLACEHOLDER}\\", '
        '\\"tenantId\\": \\"${TENANT_ID}\\", \\"clientId\\": \\"${APP_ID}\\"}'
    )
    report = f"curl -fsS -X POST {q(callback_url)} -H 'Content-Type: application/json' -d \"{payload}\" >/dev/null"
    return f"""#!/usr/bin/env bash
# clusterflow cloud connect: Azure subscription {subscription_id}, resource group {resource_group},
# for cluster {cluster_name} ({level} access). Run in Azure Cloud Shell. Registers an application
# with a federated identity credential trusting clusterflow's issuer for one subject, with roles on
# this resource group only. No secret. Checks everything it needs before changing anything; safe to
# run again.
{_PREAMBLE}SUBSCRIPTION_ID={q(subscription_id)}
RESOURCE_GROUP={q(resource_group)}
SCOPE={q(scope)}
APP_NAME={q(f"clusterflow-{short}")}
CREDENTIAL_NAME={q(f"clusterflow-{short}")}

# 1. Prerequisites: nothing is changed until all of them hold.
command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is not installed: run this in Azure Cloud Shell."
command -v curl >/dev/null 2>&1 || fail "curl is not installed: run this in Azure Cloud Shell."
az account show >/dev/null 2>&1 || fail "the Azure CLI is not logged in: run 'az login' and run this script again."
az account set --subscription "${{SUBSCRIPTION_ID}}" >/dev/null 2>&1 ||
  fail "subscription ${{SUBSCRIPTION_ID}} does not exist or the signed-in user cannot use it."
az group show --name "${{RESOURCE_GROUP}}" >/dev/null 2>&1 ||
  fail "resource group ${{RESOURCE_GROUP}} does not exist in subscription ${{SUBSCRIPTION_ID}}: create it first."
# Each of the user's role assignments on the group: its actions and notActions, comma-separated.
GRANTS=$(az rest --method get \\
  --url "https://management.azure.com${{SCOPE}}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01" \\
  --query "value[].[join(',', actions), join(',', notActions)]" -o tsv)
MAY_ASSIGN=no
while IFS=$'\t' read -r ACTIONS NOT_ACTIONS; do
  GRANTS_IT=no
  IFS=',' read -r -a ACTION_LIST <<<"${{ACTIONS}}"
  IFS=',' read -r -a NOT_ACTION_LIST <<<"${{NOT_ACTIONS}}"
  for ACTION in "${{ACTION_LIST[@]}}"; do
    case "${{ACTION,,}}" in
      "*" | "microsoft.authorization/*" | "microsoft.authorization/roleassignments/*" | \\
        "microsoft.authorization/roleassignments/write") GRANTS_IT=yes ;;
      *) ;;
    esac
  done
  for ACTION in "${{NOT_ACTION_LIST[@]}}"; do
    case "${{ACTION,,}}" in
      "microsoft.authorization/*" | "microsoft.authorization/*/write" | "microsoft.authorization/roleassignments/*" | \\
        "microsoft.authorization/roleassignments/write") GRANTS_IT=no ;;
      *) ;;
    esac
  done
  [[ "${{GRANTS_IT}}" == no ]] || MAY_ASSIGN=yes
done <<<"${{GRANTS}}"
[[ "${{MAY_ASSIGN}}" == yes ]] ||
  fail "the signed-in user may not assign roles on ${{SCOPE}}: ask an Owner or User Access Administrator."

# 2. Changes, each looked up first so a second run changes nothing.
APP_ID=$(az ad app list --display-name "${{APP_NAME}}" --query "[0].appId" -o tsv)
if [[ -z "${{APP_ID}}" ]]; then
  APP_ID=$(az ad app create --display-name "${{APP_NAME}}" --query appId -o tsv)
fi
if ! az ad sp show --id "${{APP_ID}}" >/dev/null 2>&1; then
  az ad sp create --id "${{APP_ID}}" >/dev/null
fi
SP_ID=$(az ad sp show --id "${{APP_ID}}" --query id -o tsv)
EXISTING=$(az ad app federated-credential list --id "${{APP_ID}}" --query "[?name=='${{CREDENTIAL_NAME}}'].name" -o tsv)
if [[ -z "${{EXISTING}}" ]]; then
  az ad app federated-credential create --id "${{APP_ID}}" --parameters {q(credential)} >/dev/null
fi
{roles}
TENANT_ID=$(az account show --query tenantId -o tsv)
{report}
echo "clusterflow: subscription set up; the connection completes within a minute."
"""
