// Minimal launcher for a single-node OpenSearch 2.19.x built from the Maven jars.
// Used by scripts/stack.sh; compiled once into <stack>/opensearch/classes.
//
//   java -cp 'lib/*:classes' OsLauncher <home> <httpPort> <transportPort> [host]
//
// It skips OpenSearch's Bootstrap (no bootstrap checks, JarHell or SecurityManager),
// loads the plugins from the classpath, prints READY once the node has started
// and closes the node on SIGTERM.

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.cluster.service.ClusterService;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

public class OsLauncher {

    static final class EmbeddedNode extends Node {
        EmbeddedNode(Environment env, Collection<Class<? extends Plugin>> plugins) {
            super(env, plugins, true);
        }

        @Override
        protected void configureNodeAndClusterIdStateListener(ClusterService clusterService) {
            // The default registers a static SetOnce listener; not needed here.
        }
    }

    private static final String LOG4J2 = String.join("\n",
        "status = error",
        "appender.console.type = Console",
        "appender.console.name = console",
        "appender.console.layout.type = PatternLayout",
        "appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n",
        "rootLogger.level = warn",
        "rootLogger.appenderRef.console.ref = console",
        "logger.node.name = org.opensearch.node.Node",
        "logger.node.level = info",
        "");

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: OsLauncher <home> <httpPort> <transportPort> [host]");
            System.exit(2);
        }
        Path home = Paths.get(args[0]).toAbsolutePath();
        String httpPort = args[1];
        String transportPort = args[2];
        String host = args.length > 3 ? args[3] : "127.0.0.1";

        System.setProperty("opensearch.set.netty.runtime.available.processors", "false");
        System.setProperty("log4j2.disable.jmx", "true");
        System.setProperty("log4j.shutdownHookEnabled", "false");

        Path config = home.resolve("config");
        Path data = home.resolve("data");
        Path logs = home.resolve("logs");
        for (Path p : List.of(config, data, logs)) {
            Files.createDirectories(p);
        }
        writeIfChanged(config.resolve("log4j2.properties"), LOG4J2);

        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", data.toString())
            .put("path.logs", logs.toString())
            .put("cluster.name", "logflow")
            .put("node.name", "n1")
            .put("discovery.type", "single-node")
            .put("network.host", host)
            .put("http.port", httpPort)
            .put("transport.port", transportPort)
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.destructive_requires_name", false)
            .build();

        Environment env = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), config, () -> "n1");
        LogConfigurator.registerErrorListener();
        LogConfigurator.setNodeName("n1");
        LogConfigurator.configure(env);

        List<Class<? extends Plugin>> plugins = List.of(
            Netty4Plugin.class,
            CommonAnalysisPlugin.class,
            MapperExtrasPlugin.class,
            ReindexPlugin.class);

        EmbeddedNode node = new EmbeddedNode(env, plugins);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(10, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "opensearch-shutdown"));

        node.start();
        System.out.println("READY http://" + host + ":" + httpPort + " transport " + host + ":" + transportPort);
        System.out.flush();
        stopped.await();
    }

    private static void writeIfChanged(Path file, String content) throws IOException {
        if (Files.exists(file) && new String(Files.readAllBytes(file), StandardCharsets.UTF_8).equals(content)) {
            return;
        }
        Files.write(file, content.getBytes(StandardCharsets.UTF_8));
    }
}
