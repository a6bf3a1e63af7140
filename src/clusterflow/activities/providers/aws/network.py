"""The network of an EKS cluster: the VPC, subnets, internet gateway and routes we create, or
the VPC and subnets the spec gives (`provisioner.eks.vpcId` + `subnets`), which are never
deleted.

Given subnets carry a `type`: the control plane gets every given subnet; node groups go in the
private ones when any are given (else in all), and a node group with `availabilityZones` only
in the subnets of those zones. The network we create has public subnets in two zones.

A mixin of the provider (`steps.py`). Everything created carries the tag `clusterflow:cluster-id`,
which is how a retry finds it and how teardown deletes only what we made.
"""

from __future__ import annotations

from typing import Any

from clusterflow.activities.providers.aws.clients import Account
from clusterflow.activities.providers.aws.steps import CLUSTER_TAG, AwsSteps, eks_settings
from clusterflow.activities.providers.phases import PhaseReporter, ProviderError
from clusterflow.contracts.cloud_accounts import CloudErrorCode
from clusterflow.contracts.cluster import NodeGroupSpec
from clusterflow.contracts.operations import ErrorCode
from clusterflow.contracts.phase_activity import ClusterFacts, NetworkFacts, PhaseInput, PhaseResult

VPC_QUOTA = ("vpc", "L-F678F1CE")  # VPCs per Region
DEFAULT_VPC_CIDR = "10.0.0.0/16"


class NetworkSteps(AwsSteps):
    async def _check_vpc_quota(self, inp: PhaseInput, reporter: PhaseReporter, account: Account, ec2: Any) -> None:
        if await self._our_vpc(inp, account, ec2) is not None:
            return  # a retry: the VPC this cluster needs exists already
        quotas = account.client("service-quotas")
        quota = await account.call(
            quotas,
            "get_service_quota",
            ServiceCode=VPC_QUOTA[0],
            QuotaCode=VPC_QUOTA[1],
            missing=("NoSuchResourceException",),
        )
        if quota is None:
            return
        limit = int(quota["Quota"]["Value"])
        used = len((await account.call(ec2, "describe_vpcs"))["Vpcs"])
        if used >= limit:
            raise ProviderError(
                CloudErrorCode.CLOUD_QUOTA_EXCEEDED,
                f"{inp.region} already has {used} of {limit} VPCs allowed. Remedy: request a higher 'VPCs per "
                "Region' quota, delete an unused VPC, or give provisioner.eks.vpcId and subnets.",
                retryable=False,
            )
        await reporter.event("quota", f"VPC quota: {used} of {limit} used", fraction=0.8)

    async def _our_vpc(self, inp: PhaseInput, account: Account, ec2: Any) -> str | None:
        found = await account.call(
            ec2, "describe_vpcs", Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [inp.cluster_id]}]
        )
        vpcs = found["Vpcs"]
        return str(vpcs[0]["VpcId"]) if vpcs else None

    async def _network(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> PhaseResult:
        ec2 = account.client("ec2")
        eks = eks_settings(inp.cluster)
        if eks.vpc_id:
            subnet_ids = await self._given_subnets(inp, account, ec2)
            await reporter.event("given", f"using VPC {eks.vpc_id} and subnets {', '.join(subnet_ids)}", fraction=1)
            return PhaseResult(inp.phase, facts=ClusterFacts(network=NetworkFacts(eks.vpc_id, tuple(subnet_ids))))
        vpc_id = await self._our_vpc(inp, account, ec2)
        if vpc_id is None:
            created = await account.call(
                ec2,
                "create_vpc",
                CidrBlock=eks.vpc_cidr or DEFAULT_VPC_CIDR,
                TagSpecifications=self._tag_spec(inp, "vpc", Name=f"cf-{inp.cluster_name}"),
            )
            vpc_id = created["Vpc"]["VpcId"]
            await reporter.event("vpc/created", f"created VPC {vpc_id}", fraction=0.2)
        else:
            await reporter.event("vpc/found", f"found existing VPC {vpc_id}", fraction=0.2)
        await account.call(ec2, "modify_vpc_attribute", VpcId=vpc_id, EnableDnsHostnames={"Value": True})
        gateway = await self._internet_gateway(inp, account, ec2, vpc_id)
        zones = [
            z["ZoneName"]
            for z in (await account.call(ec2, "describe_availability_zones"))["AvailabilityZones"]
            if z.get("State", "available") == "available"
        ][:2]
        if len(zones) < 2:
            raise ProviderError(
                CloudErrorCode.CLOUD_INVALID_PARAMETER,
                f"EKS needs two availability zones; {inp.region} offers {len(zones)}. Remedy: choose another region.",
                retryable=False,
            )
        cidr_base = (eks.vpc_cidr or DEFAULT_VPC_CIDR).split("/")[0].split(".")
        subnet_ids = []
        for index, zone in enumerate(zones):
            name = f"public-{index}"
            cidr = f"{cidr_base[0]}.{cidr_base[1]}.{index * 32}.0/19"
            subnet_ids.append(await self._subnet(inp, account, ec2, vpc_id, name, cidr, zone))
            await reporter.event(f"subnet/{name}", f"subnet {name} ready in {zone}", fraction=0.4 + 0.2 * index)
        await self._routes(inp, account, ec2, vpc_id, gateway, subnet_ids)
        return PhaseResult(
            inp.phase,
            resources=[f"vpc/{vpc_id}", *(f"subnet/{s}" for s in subnet_ids)],
            facts=ClusterFacts(network=NetworkFacts(vpc_id, tuple(subnet_ids))),
        )

    async def _given_subnets(
        self, inp: PhaseInput, account: Account, ec2: Any, *, for_nodes: bool = False
    ) -> list[str]:
        """The given subnets (checked to be in the given VPC); `for_nodes`: the private ones, if any."""
        eks = eks_settings(inp.cluster)
        ids = list(dict.fromkeys(s.id for s in eks.subnets))
        if len(ids) < 2:
            raise ProviderError(
                ErrorCode.INVALID_SPEC,
                "provisioner.eks.vpcId needs at least two subnet IDs in provisioner.eks.subnets (two zones).",
                retryable=False,
            )
        found = (await account.call(ec2, "describe_subnets", SubnetIds=ids))["Subnets"]
        wrong = [s["SubnetId"] for s in found if s["VpcId"] != eks.vpc_id]
        if wrong:
            raise ProviderError(
                ErrorCode.INVALID_SPEC,
                f"subnets {', '.join(wrong)} are not in VPC {eks.vpc_id}. Remedy: list subnets of that VPC.",
                retryable=False,
            )
        private = list(dict.fromkeys(s.id for s in eks.subnets if s.type == "private"))
        return private if for_nodes and private else ids

    async def _internet_gateway(self, inp: PhaseInput, account: Account, ec2: Any, vpc_id: str) -> str:
        found = await account.call(
            ec2, "describe_internet_gateways", Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [inp.cluster_id]}]
        )
        gateways = found["InternetGateways"]
        if gateways:
            gateway = gateways[0]
        else:
            gateway = (
                await account.call(
                    ec2, "create_internet_gateway", TagSpecifications=self._tag_spec(inp, "internet-gateway")
                )
            )["InternetGateway"]
        if not any(a.get("VpcId") == vpc_id for a in gateway.get("Attachments") or []):
            await account.call(
                ec2, "attach_internet_gateway", InternetGatewayId=gateway["InternetGatewayId"], VpcId=vpc_id
            )
        return str(gateway["InternetGatewayId"])

    async def _subnet(
        self, inp: PhaseInput, account: Account, ec2: Any, vpc_id: str, name: str, cidr: str, zone: str
    ) -> str:
        found = await account.call(
            ec2,
            "describe_subnets",
            Filters=[
                {"Name": f"tag:{CLUSTER_TAG}", "Values": [inp.cluster_id]},
                {"Name": "tag:clusterflow:subnet", "Values": [name]},
            ],
        )
        if found["Subnets"]:
            subnet_id = str(found["Subnets"][0]["SubnetId"])
        else:
            subnet_id = await self._create_subnet(inp, account, ec2, vpc_id, name, cidr, zone)
        # Every time: a worker lost between create and modify must not leave it private.
        await account.call(ec2, "modify_subnet_attribute", SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": True})
        return subnet_id

    async def _create_subnet(
        self, inp: PhaseInput, account: Account, ec2: Any, vpc_id: str, name: str, cidr: str, zone: str
    ) -> str:
        created = await account.call(
            ec2,
            "create_subnet",
            VpcId=vpc_id,
            CidrBlock=cidr,
            AvailabilityZone=zone,
            TagSpecifications=self._tag_spec(
                inp, "subnet", **{"clusterflow:subnet": name, "kubernetes.io/role/elb": "1"}
            ),
        )
        return str(created["Subnet"]["SubnetId"])

    async def _routes(
        self, inp: PhaseInput, account: Account, ec2: Any, vpc_id: str, gateway: str, subnet_ids: list[str]
    ) -> None:
        found = await account.call(
            ec2, "describe_route_tables", Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [inp.cluster_id]}]
        )
        if found["RouteTables"]:
            table = found["RouteTables"][0]
        else:
            table = (
                await account.call(
                    ec2, "create_route_table", VpcId=vpc_id, TagSpecifications=self._tag_spec(inp, "route-table")
                )
            )["RouteTable"]
        table_id = table["RouteTableId"]
        if not any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in table.get("Routes") or []):
            await account.call(
                ec2, "create_route", RouteTableId=table_id, DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway
            )
        associated = {a.get("SubnetId") for a in table.get("Associations") or []}
        for subnet_id in subnet_ids:
            if subnet_id not in associated:
                await account.call(ec2, "associate_route_table", RouteTableId=table_id, SubnetId=subnet_id)

    async def _node_subnet_ids(self, inp: PhaseInput, account: Account, group: NodeGroupSpec) -> list[str]:
        """Where a node group's nodes go: the node subnets, narrowed to the group's zones if it names any."""
        ids = await self._subnet_ids(inp, account, for_nodes=True)
        if not group.zones:
            return ids
        found = (await account.call(account.client("ec2"), "describe_subnets", SubnetIds=ids))["Subnets"]
        chosen = sorted(s["SubnetId"] for s in found if s.get("AvailabilityZone") in group.zones)
        if not chosen:
            zones = sorted({str(s.get("AvailabilityZone")) for s in found})
            raise ProviderError(
                ErrorCode.INVALID_SPEC,
                f"node group {group.name} asks for zones {', '.join(group.zones)}, but the cluster's node subnets "
                f"are in {', '.join(zones)}. Remedy: list zones of those subnets, or none.",
                retryable=False,
            )
        return chosen

    async def _subnet_ids(self, inp: PhaseInput, account: Account, *, for_nodes: bool = False) -> list[str]:
        """The control plane's subnets (every one), or with `for_nodes` those node groups use."""
        ec2 = account.client("ec2")
        if eks_settings(inp.cluster).vpc_id:
            return await self._given_subnets(inp, account, ec2, for_nodes=for_nodes)
        found = await account.call(
            ec2,
            "describe_subnets",
            Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [inp.cluster_id]}],
        )
        ids = sorted(s["SubnetId"] for s in found["Subnets"])
        if len(ids) < 2:
            raise ProviderError(
                CloudErrorCode.CLOUD_RESOURCE_FAILED,
                f"the subnets of cluster {inp.cluster_name} are missing (found {len(ids)})",
                retryable=True,
            )
        return ids

    async def _delete_network(self, inp: PhaseInput, reporter: PhaseReporter, account: Account) -> list[str]:
        """Delete only what we created (tagged with the cluster ID); a given VPC is never touched."""
        ec2 = account.client("ec2")
        ours = [{"Name": f"tag:{CLUSTER_TAG}", "Values": [inp.cluster_id]}]
        deleted: list[str] = []
        gone: tuple[str, ...] = ("InvalidSubnetID.NotFound", "InvalidRouteTableID.NotFound", "InvalidVpcID.NotFound")
        gone += ("InvalidInternetGatewayID.NotFound", "InvalidAssociationID.NotFound", "Gateway.NotAttached")
        for table in (await account.call(ec2, "describe_route_tables", Filters=ours))["RouteTables"]:
            for association in table.get("Associations") or []:
                if not association.get("Main"):
                    await account.call(
                        ec2,
                        "disassociate_route_table",
                        AssociationId=association["RouteTableAssociationId"],
                        missing=gone,
                    )
            await account.call(ec2, "delete_route_table", RouteTableId=table["RouteTableId"], missing=gone)
            deleted.append(f"route-table/{table['RouteTableId']}")
        for subnet in (await account.call(ec2, "describe_subnets", Filters=ours))["Subnets"]:
            await account.call(ec2, "delete_subnet", SubnetId=subnet["SubnetId"], missing=gone)
            deleted.append(f"subnet/{subnet['SubnetId']}")
        for gateway in (await account.call(ec2, "describe_internet_gateways", Filters=ours))["InternetGateways"]:
            for attachment in gateway.get("Attachments") or []:
                await account.call(
                    ec2,
                    "detach_internet_gateway",
                    InternetGatewayId=gateway["InternetGatewayId"],
                    VpcId=attachment["VpcId"],
                    missing=gone,
                )
            await account.call(
                ec2, "delete_internet_gateway", InternetGatewayId=gateway["InternetGatewayId"], missing=gone
            )
            deleted.append(f"internet-gateway/{gateway['InternetGatewayId']}")
        for vpc in (await account.call(ec2, "describe_vpcs", Filters=ours))["Vpcs"]:
            await account.call(ec2, "delete_vpc", VpcId=vpc["VpcId"], missing=gone)
            deleted.append(f"vpc/{vpc['VpcId']}")
        await reporter.event("network", f"deleted {len(deleted)} network resources", fraction=1.0)
        return deleted
