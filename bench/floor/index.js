// The floor of the end-to-end benchmark: the least a gateway can do. It forwards every
// request's body to the upstream's chat completions endpoint and returns the answer
// (streamed through as it comes). No parsing, no routing, no metrics.
export default {
  async fetch(request, env) {
    return fetch(`${env.UPSTREAM}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${env.KEY}` },
      body: request.body,
    });
  },
};
