// Preloaded (node --import) before the reference server: its HTTP server listens on 127.0.0.1
// instead of every interface, as a test server should.
import http from "node:http";

const listen = http.Server.prototype.listen;
http.Server.prototype.listen = function (port, ...rest) {
  if ((typeof port === "number" || typeof port === "string") && typeof rest[0] !== "string") {
    return listen.call(this, port, "127.0.0.1", ...rest);
  }
  return listen.call(this, port, ...rest);
};
