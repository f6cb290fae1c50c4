"""The fleet's network: a VPC whose tasks sit in private subnets, reach the AWS APIs through
a NAT gateway (S3 and DynamoDB through free gateway endpoints), and reach the MCP servers
only from the workers' security group. Nothing listens on a public address."""

from __future__ import annotations

import functools
import ipaddress

import pulumi
import pulumi_aws as aws

HTTPS = 443
ANYWHERE = "0.0.0.0/0"
GATEWAY_ENDPOINTS = ("s3", "dynamodb")


def _nth(i: int, names: list[str]) -> str:
    return names[i]


class Network(pulumi.ComponentResource):
    vpc: aws.ec2.Vpc
    private_subnets: list[aws.ec2.Subnet]
    workers_group: aws.ec2.SecurityGroup
    mcp_group: aws.ec2.SecurityGroup

    def __init__(
        self,
        name: str,
        cidr: str,
        zones: int,
        mcp_ports: list[int],
        region: str,
        nat_per_zone: bool,
        otlp_port: int | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("incident-fleet:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        blocks = [str(b) for b in ipaddress.ip_network(cidr).subnets(new_prefix=20)]
        self.vpc = aws.ec2.Vpc(
            "fleet", cidr_block=cidr, enable_dns_hostnames=True, enable_dns_support=True, opts=child
        )
        zone_names = aws.get_availability_zones_output(state="available").names
        igw = aws.ec2.InternetGateway("fleet", vpc_id=self.vpc.id, opts=child)
        public_routes = aws.ec2.RouteTable(
            "public",
            vpc_id=self.vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block=ANYWHERE, gateway_id=igw.id)],
            opts=child,
        )
        self.private_subnets = []
        private_routes = []
        nats: list[aws.ec2.NatGateway] = []
        for i in range(zones):
            zone = zone_names.apply(functools.partial(_nth, i))
            # The public subnets hold the NAT gateways and nothing else.
            public = aws.ec2.Subnet(
                f"public-{i}",
                vpc_id=self.vpc.id,
                cidr_block=blocks[8 + i],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"public-{i}", subnet_id=public.id, route_table_id=public_routes.id, opts=child
            )
            if i == 0 or nat_per_zone:
                eip = aws.ec2.Eip(f"nat-{i}", domain="vpc", opts=child)
                nats.append(
                    aws.ec2.NatGateway(
                        f"nat-{i}", subnet_id=public.id, allocation_id=eip.id, opts=child
                    )
                )
            private = aws.ec2.Subnet(
                f"private-{i}",
                vpc_id=self.vpc.id,
                cidr_block=blocks[i],
                availability_zone=zone,
                map_public_ip_on_launch=False,
                opts=child,
            )
            routes = aws.ec2.RouteTable(
                f"private-{i}",
                vpc_id=self.vpc.id,
                routes=[
                    aws.ec2.RouteTableRouteArgs(cidr_block=ANYWHERE, nat_gateway_id=nats[-1].id)
                ],
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"private-{i}", subnet_id=private.id, route_table_id=routes.id, opts=child
            )
            self.private_subnets.append(private)
            private_routes.append(routes)
        for service in GATEWAY_ENDPOINTS:
            aws.ec2.VpcEndpoint(
                service,
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Gateway",
                route_table_ids=[r.id for r in private_routes],
                opts=child,
            )

        self.workers_group = aws.ec2.SecurityGroup(
            "workers",
            vpc_id=self.vpc.id,
            description="Stage workers: out to the AWS APIs and the MCP servers; nothing in",
            opts=child,
        )
        self.mcp_group = aws.ec2.SecurityGroup(
            "mcp-servers",
            vpc_id=self.vpc.id,
            description="MCP tool servers: in from the workers only; out to the AWS APIs",
            opts=child,
        )
        for group, label in ((self.workers_group, "workers"), (self.mcp_group, "mcp")):
            outward = [(HTTPS, "https", "AWS APIs over HTTPS")]
            if otlp_port is not None and otlp_port != HTTPS:
                # Spans to the stack's OTLP endpoint (4318 for OTLP/HTTP), from every task.
                outward.append((otlp_port, "otlp", "spans to the OTLP endpoint"))
            for port, name, description in outward:
                aws.vpc.SecurityGroupEgressRule(
                    f"{label}-{name}-out",
                    security_group_id=group.id,
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    cidr_ipv4=ANYWHERE,
                    description=description,
                    opts=child,
                )
        for port in mcp_ports:
            aws.vpc.SecurityGroupIngressRule(
                f"mcp-in-{port}",
                security_group_id=self.mcp_group.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                referenced_security_group_id=self.workers_group.id,
                description="MCP over SSE/HTTP from the stage workers",
                opts=child,
            )
            aws.vpc.SecurityGroupEgressRule(
                f"workers-to-mcp-{port}",
                security_group_id=self.workers_group.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                referenced_security_group_id=self.mcp_group.id,
                description="to the MCP servers",
                opts=child,
            )
        self.register_outputs(
            {
                "vpc_id": self.vpc.id,
                "private_subnet_ids": [s.id for s in self.private_subnets],
            }
        )
