//! MCP message types of both protocol eras (in progress).
