// A tiny echo service for grpc-js: /test.Echo/Echo returns "<backend name>:<request>".
import * as grpc from "@grpc/grpc-js";

const methods = {
  Echo: {
    path: "/test.Echo/Echo",
    requestStream: false,
    responseStream: false,
    requestSerialize: (s: string) => Buffer.from(s),
    requestDeserialize: (b: Buffer) => b.toString(),
    responseSerialize: (s: string) => Buffer.from(s),
    responseDeserialize: (b: Buffer) => b.toString(),
  },
} satisfies grpc.ServiceDefinition;

export const EchoClient = grpc.makeGenericClientConstructor(methods, "Echo");

export interface EchoBackend {
  port: number;
  close(): Promise<void>;
}

export async function startEchoBackend(name: string): Promise<EchoBackend> {
  const server = new grpc.Server();
  server.addService(methods, {
    Echo: (call: grpc.ServerUnaryCall<string, string>, cb: grpc.sendUnaryData<string>) => cb(null, `${name}:${call.request}`),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}

export function echo(client: grpc.Client, message: string, deadlineMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    (client as unknown as { Echo: (m: string, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: Error | null, r?: string) => void) => void }).Echo(
      message,
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (err, res) => (err ? reject(err) : resolve(res!)),
    );
  });
}
