// A JDK HTTPS client for the truststore tests: GETs args[0] with the default SSLContext, which
// reads -Djavax.net.ssl.trustStore, -trustStoreType and -trustStorePassword, and prints the body.
// Run with `java https_client.java <url>` (single-file source launch, JDK 11+).
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class HttpsClient {
  public static void main(String[] args) throws Exception {
    HttpClient client = HttpClient.newHttpClient();
    HttpResponse<String> response = client.send(
        HttpRequest.newBuilder(URI.create(args[0])).build(), HttpResponse.BodyHandlers.ofString());
    System.out.print(response.body());
  }
}
