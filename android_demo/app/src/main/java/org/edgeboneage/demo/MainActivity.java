package org.edgeboneage.demo;

import android.app.Activity;
import android.content.ActivityNotFoundException;
import android.content.Intent;
import android.net.Uri;
import android.os.Build;
import android.os.Bundle;
import android.webkit.JavascriptInterface;
import android.webkit.ValueCallback;
import android.webkit.WebChromeClient;
import android.webkit.WebResourceRequest;
import android.webkit.WebResourceResponse;
import android.webkit.WebSettings;
import android.webkit.WebView;
import android.webkit.WebViewClient;
import android.widget.Toast;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.Map;

import org.edgeboneage.core.PreprocessSpec;
import org.edgeboneage.core.TfliteMetadata;

/**
 * Hosts android_demo/web in a WebView. Page, LiteRT.js runtime (WebAssembly) and the bundled model are served from
 * the APK's assets under https://appassets.androidplatform.net/ (the WebViewAssetLoader convention, done by hand:
 * no androidx here), so ES modules and WebAssembly load without file:// restrictions and without any network.
 * Gallery/camera picking goes through the page's file inputs, answered here by onShowFileChooser.
 */
public class MainActivity extends Activity {
    static final String HOST = "appassets.androidplatform.net";
    static final String START_URL = "https://" + HOST + "/web/index.html";
    private static final int PICK_REQUEST = 1;

    private WebView web;
    private ValueCallback<Uri[]> pending;

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        web = new WebView(this);
        WebSettings s = web.getSettings();
        s.setJavaScriptEnabled(true);
        s.setAllowFileAccess(false);
        s.setAllowContentAccess(true);
        s.setDomStorageEnabled(true);
        s.setBlockNetworkLoads(true);  // everything comes from assets
        web.setWebViewClient(new AssetClient());
        web.setWebChromeClient(new Chooser());
        web.addJavascriptInterface(new Bridge(), "EdgeBoneageNative");
        setContentView(web);
        if (state == null) web.loadUrl(START_URL);
        else web.restoreState(state);
    }

    @Override
    protected void onSaveInstanceState(Bundle out) {
        super.onSaveInstanceState(out);
        web.saveState(out);
    }

    @Override
    public void onBackPressed() {
        if (web.canGoBack()) web.goBack();
        else super.onBackPressed();
    }

    static String mimeType(String path) {
        String p = path.toLowerCase(java.util.Locale.ROOT);
        if (p.endsWith(".html")) return "text/html";
        if (p.endsWith(".js") || p.endsWith(".mjs")) return "text/javascript";
        if (p.endsWith(".wasm")) return "application/wasm";
        if (p.endsWith(".json")) return "application/json";
        if (p.endsWith(".css")) return "text/css";
        if (p.endsWith(".png")) return "image/png";
        if (p.endsWith(".jpg") || p.endsWith(".jpeg")) return "image/jpeg";
        return "application/octet-stream";
    }

    /** Serves https://appassets.androidplatform.net/PATH from assets/PATH; anything else is blocked. */
    private final class AssetClient extends WebViewClient {
        @Override
        public WebResourceResponse shouldInterceptRequest(WebView view, WebResourceRequest request) {
            Uri u = request.getUrl();
            if (!HOST.equals(u.getHost())) return new WebResourceResponse("text/plain", "utf-8", 403, "Forbidden",
                null, new java.io.ByteArrayInputStream(new byte[0]));
            String path = u.getPath() == null ? "" : u.getPath();
            while (path.startsWith("/")) path = path.substring(1);
            if (path.contains("..")) return null;
            try {
                InputStream in = getAssets().open(path);
                return new WebResourceResponse(mimeType(path), null, in);
            } catch (IOException e) {
                return new WebResourceResponse("text/plain", "utf-8", 404, "Not Found", null,
                    new java.io.ByteArrayInputStream(new byte[0]));
            }
        }

        @Override
        @SuppressWarnings("deprecation")  // the WebResourceRequest overload is API 24; we build against API 23
        public boolean shouldOverrideUrlLoading(WebView view, String url) {
            return !HOST.equals(Uri.parse(url).getHost());  // never navigate away
        }
    }

    /** Answers the page's <input type=file> (gallery, or camera where the picker offers it). */
    private final class Chooser extends WebChromeClient {
        @Override
        public boolean onShowFileChooser(WebView view, ValueCallback<Uri[]> callback, FileChooserParams params) {
            if (pending != null) pending.onReceiveValue(null);
            pending = callback;
            Intent pick = params.createIntent();
            try {
                startActivityForResult(Intent.createChooser(pick, "Choose a file"), PICK_REQUEST);
            } catch (ActivityNotFoundException e) {
                pending = null;
                Toast.makeText(MainActivity.this, "No app to pick files", Toast.LENGTH_LONG).show();
                return false;
            }
            return true;
        }
    }

    @Override
    protected void onActivityResult(int requestCode, int resultCode, Intent data) {
        if (requestCode == PICK_REQUEST && pending != null) {
            pending.onReceiveValue(WebChromeClient.FileChooserParams.parseResult(resultCode, data));
            pending = null;
            return;
        }
        super.onActivityResult(requestCode, resultCode, data);
    }

    /** window.EdgeBoneageNative in the page. */
    final class Bridge {
        @JavascriptInterface
        public String deviceInfo() {
            return Build.MANUFACTURER + " " + Build.MODEL + ", Android " + Build.VERSION.RELEASE
                + " (API " + Build.VERSION.SDK_INT + ")" + bundledModelInfo();
        }

        /** Reads the bundled model's metadata with the shared Java core (the same code the Gradle app uses). */
        private String bundledModelInfo() {
            try {
                InputStream in = getAssets().open("web/models/default.tflite");
                ByteArrayOutputStream buf = new ByteArrayOutputStream();
                byte[] chunk = new byte[1 << 16];
                for (int n; (n = in.read(chunk)) > 0; ) buf.write(chunk, 0, n);
                in.close();
                Map<String, Object> meta = TfliteMetadata.read(buf.toByteArray());
                if (meta == null) return "; bundled model has no edge_boneage metadata";
                PreprocessSpec spec = PreprocessSpec.fromMetadata(meta, 0);
                Object model = meta.get("model");  // edge-boneage export: {"name": ..., "registry_name": ...}
                if (model instanceof Map) {
                    Map<?, ?> m = (Map<?, ?>) model;
                    model = m.get("registry_name") != null ? m.get("registry_name") : m.get("name");
                }
                return "; bundled model " + model + " (" + spec.inputSize + " px, read by the Java core)";
            } catch (IOException e) {
                return "; no bundled model";
            } catch (RuntimeException e) {
                return "; bundled model metadata unreadable: " + e.getMessage();
            }
        }
    }
}
