"""asyncio: servers, clients, the hub, the relay, and the lifecycle they share."""
