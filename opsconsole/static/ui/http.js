// Shared by app.js and memory.js: how a failed response reads to the operator.
"use strict";

window.opsHttp = {
  // Errors come as {"error", "message"}; anything else (a proxy's page, say) as its status.
  async errorMessage(resp) {
    try {
      const data = await resp.json();
      if (data && typeof data.message === "string") {
        return data.message;
      }
    } catch {
      // not JSON: fall through
    }
    return `HTTP ${resp.status} ${resp.statusText}`.trim();
  },
};
