"""modules/extra_networks.py (identical in both webuis): `<name:a:b:k=v>` parsing, activation, and the
`after_extra_networks_activate` script hook at the end of every activation."""
import re
from collections import defaultdict

from modules import errors

extra_network_registry = {}
extra_network_aliases = {}
re_extra_net = re.compile(r"<(\w+):([^>]+)>")


class ExtraNetworkParams:
    def __init__(self, items=None):
        self.items = items or []
        self.positional = []
        self.named = {}
        for item in self.items:
            parts = item.split("=", 2) if isinstance(item, str) else [item]
            if len(parts) == 2:
                self.named[parts[0]] = parts[1]
            else:
                self.positional.append(item)

    def __eq__(self, other):
        return self.items == other.items

    def __repr__(self):
        return f"ExtraNetworkParams({self.items!r})"


class ExtraNetwork:
    def __init__(self, name):
        self.name = name


def register_extra_network(extra_network):
    extra_network_registry[extra_network.name] = extra_network


def register_extra_network_alias(extra_network, alias):
    extra_network_aliases[alias] = extra_network


def lookup_extra_networks(extra_network_data):
    res = {}
    for name, args in list(extra_network_data.items()):
        extra_network = extra_network_registry.get(name) or extra_network_aliases.get(name)
        if extra_network is None:
            continue
        res.setdefault(extra_network, []).extend(args)
    return res


def activate(p, extra_network_data):
    activated = []
    for extra_network, args in lookup_extra_networks(extra_network_data).items():
        try:
            extra_network.activate(p, args)
            activated.append(extra_network)
        except Exception as e:
            errors.display(e, f"activating extra network {extra_network.name} with arguments {args}")
    for name, extra_network in extra_network_registry.items():
        if extra_network in activated:
            continue
        try:
            extra_network.activate(p, [])
        except Exception as e:
            errors.display(e, f"activating extra network {name}")
    if p.scripts is not None:
        p.scripts.after_extra_networks_activate(p, batch_number=p.iteration, prompts=p.prompts, seeds=p.seeds,
                                                subseeds=p.subseeds, extra_network_data=extra_network_data)


def deactivate(p, extra_network_data):
    pass


def parse_prompt(prompt):
    res = defaultdict(list)

    def found(m):
        res[m.group(1)].append(ExtraNetworkParams(items=m.group(2).split(":")))
        return ""

    return re.sub(re_extra_net, found, prompt), res


def parse_prompts(prompts):
    res, extra_data = [], None
    for prompt in prompts:
        updated, parsed = parse_prompt(prompt)
        if extra_data is None:
            extra_data = parsed
        res.append(updated)
    return res, extra_data
