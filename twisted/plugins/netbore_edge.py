from twisted.application.service import ServiceMaker

netboreEdge = ServiceMaker(
    "netbore-edge",
    "netbore.edge.tap",
    "netbore edge: control API, agent WebSocket endpoint and tunnel proxy",
    "netbore-edge",
)
