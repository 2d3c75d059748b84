from twisted.application.service import ServiceMaker

netboreAgent = ServiceMaker(
    "netbore-agent",
    "netbore.agent.tap",
    "netbore agent: exposes a local origin through a netbore edge",
    "netbore-agent",
)
