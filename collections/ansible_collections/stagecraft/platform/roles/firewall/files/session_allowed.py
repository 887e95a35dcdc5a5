"""Whether the SSH session running the role could open a new SSH connection under the
new rules. Argument: a JSON object with ssh_connection (the session's $SSH_CONNECTION),
ssh, ssh_port, private_cidrs, private_interfaces. Prints a JSON object
{"allowed": bool, "reason": str}. Never changes anything."""

import fnmatch
import ipaddress
import json
import subprocess
import sys


def incoming_interface(source: str) -> str:
    # The interface the host sends replies to `source` through: where it came in.
    out = subprocess.run(["ip", "-o", "route", "get", source], capture_output=True,
                         text=True, check=False).stdout.split()
    return out[out.index("dev") + 1] if "dev" in out else ""


def main() -> None:
    args = json.loads(sys.argv[1])
    fields = args["ssh_connection"].split()
    if len(fields) != 4:
        print(json.dumps({"allowed": True, "reason": "not an SSH session"}))
        return
    source, port = fields[0], fields[3]
    if int(port) != int(args["ssh_port"]):
        print(json.dumps({"allowed": False, "reason": (
            f"this session came in on port {port}, the rules allow SSH on port "
            f"{args['ssh_port']} only")}))
        return
    if args["ssh"] == "public":
        print(json.dumps({"allowed": True, "reason": "SSH is allowed from anywhere"}))
        return
    address = ipaddress.ip_address(source)
    for cidr in args["private_cidrs"]:
        if address in ipaddress.ip_network(cidr, strict=False):
            print(json.dumps({"allowed": True, "reason": f"{source} is in {cidr}"}))
            return
    interface = incoming_interface(source)
    for pattern in args["private_interfaces"]:
        if fnmatch.fnmatchcase(interface, pattern):
            print(json.dumps({"allowed": True, "reason": f"{source} comes in on {interface}"}))
            return
    print(json.dumps({"allowed": False, "reason": (
        f"this session comes from {source} (interface {interface or 'unknown'}), which is "
        "not on the private side")}))


if __name__ == "__main__":
    main()
