"""The HTTP door: Tornado app, URL table, handlers, the websocket terminal and its frame reader."""
