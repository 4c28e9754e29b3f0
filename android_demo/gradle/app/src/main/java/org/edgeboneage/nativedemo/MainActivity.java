package org.edgeboneage.nativedemo;

import android.app.Activity;
import android.content.Intent;
import android.content.res.AssetFileDescriptor;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.os.Bundle;
import android.os.SystemClock;
import android.view.View;
import android.widget.Button;
import android.widget.ImageView;
import android.widget.LinearLayout;
import android.widget.RadioButton;
import android.widget.RadioGroup;
import android.widget.TextView;

import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;

import org.edgeboneage.core.AgeResult;
import org.edgeboneage.core.GreyImage;
import org.edgeboneage.core.Preprocess;
import org.edgeboneage.core.PreprocessSpec;
import org.edgeboneage.core.Quality;
import org.edgeboneage.core.TfliteMetadata;
import org.tensorflow.lite.DataType;
import org.tensorflow.lite.Interpreter;
import org.tensorflow.lite.Tensor;

/**
 * Native LiteRT version of the demo: gallery image -> Java core preprocessing (bit-exact with edge_boneage) ->
 * org.tensorflow.lite.Interpreter (com.google.ai.edge.litert) by signature names "image"/"sex" -> "age"/"probs".
 * The input quality gate (org.edgeboneage.core.Quality, a port of edge_boneage.quality) runs on every picture: one it
 * does not accept as a hand radiograph gets its age shown, marked, with predict's warning line and the reasons.
 * Not built in this repository (no Google Maven there); see android_demo/README.md.
 */
public class MainActivity extends Activity {
    private static final int PICK = 1;
    private Interpreter interpreter;
    private PreprocessSpec spec;
    private Double featureThreshold;  // the gate's feature check (metadata outputs.feature_residual), or null
    private boolean hasSex;
    private TextView out;
    private ImageView preview;
    private RadioGroup sex;
    private Bitmap bitmap;
    private String[] formatMode = {null, null};  // the picked file's format and Pillow mode (Quality.sourceMode)

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        LinearLayout root = new LinearLayout(this);
        root.setOrientation(LinearLayout.VERTICAL);
        root.setPadding(24, 24, 24, 24);
        Button pick = new Button(this);
        pick.setText("Choose radiograph");
        sex = new RadioGroup(this);
        sex.setOrientation(RadioGroup.HORIZONTAL);
        RadioButton male = new RadioButton(this), female = new RadioButton(this);
        male.setText("male"); male.setId(1);
        female.setText("female"); female.setId(2);
        sex.addView(male); sex.addView(female);
        out = new TextView(this);
        out.setTextSize(18);
        preview = new ImageView(this);
        root.addView(pick); root.addView(sex); root.addView(out); root.addView(preview);
        setContentView(root);
        pick.setOnClickListener(new View.OnClickListener() {
            public void onClick(View v) {
                Intent i = new Intent(Intent.ACTION_GET_CONTENT);
                i.setType("image/*");
                startActivityForResult(Intent.createChooser(i, "Radiograph"), PICK);
            }
        });
        sex.setOnCheckedChangeListener(new RadioGroup.OnCheckedChangeListener() {
            public void onCheckedChanged(RadioGroup g, int id) { run(); }
        });
        try {
            loadModel();
        } catch (Exception e) {
            out.setText("Cannot load assets/model.tflite: " + e.getMessage());
        }
    }

    private void loadModel() throws Exception {
        AssetFileDescriptor fd = getAssets().openFd("model.tflite");
        FileChannel ch = new FileInputStream(fd.getFileDescriptor()).getChannel();
        MappedByteBuffer model = ch.map(FileChannel.MapMode.READ_ONLY, fd.getStartOffset(), fd.getDeclaredLength());
        byte[] bytes = new byte[(int) fd.getDeclaredLength()];
        model.get(bytes);
        model.rewind();
        Interpreter.Options opts = new Interpreter.Options();
        opts.setNumThreads(2);
        interpreter = new Interpreter(model, opts);
        Tensor image = interpreter.getInputTensorFromSignature("image", "serving_default");
        Map<String, Object> meta = TfliteMetadata.read(bytes);
        spec = PreprocessSpec.fromMetadata(meta, image.shape()[1]);
        boolean hasResidual = java.util.Arrays.asList(interpreter.getSignatureOutputs("serving_default"))
            .contains("feature_residual");
        featureThreshold = hasResidual ? Quality.featureThreshold(meta) : null;
        hasSex = java.util.Arrays.asList(interpreter.getSignatureInputs("serving_default")).contains("sex");
        sex.setVisibility(hasSex ? View.VISIBLE : View.GONE);
        out.setText(String.format(Locale.ROOT, "Model: %d px input. Choose a radiograph.", spec.inputSize));
    }

    @Override
    protected void onActivityResult(int req, int res, Intent data) {
        if (req != PICK || res != RESULT_OK || data == null) return;
        try {
            InputStream in = getContentResolver().openInputStream(data.getData());
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            byte[] chunk = new byte[1 << 16];
            for (int n; (n = in.read(chunk)) > 0; ) buf.write(chunk, 0, n);
            in.close();
            byte[] bytes = buf.toByteArray();
            formatMode = Quality.sourceMode(bytes);  // the colour check needs the file's mode, as read_image records it
            BitmapFactory.Options o = new BitmapFactory.Options();
            o.inPreferredConfig = Bitmap.Config.ARGB_8888;
            o.inPremultiplied = false;
            bitmap = BitmapFactory.decodeByteArray(bytes, 0, bytes.length, o);
            preview.setImageBitmap(bitmap);
            run();
        } catch (Exception e) {
            out.setText("Cannot read the image: " + e.getMessage());
        }
    }

    private void run() {
        if (interpreter == null || bitmap == null) return;
        if (hasSex && sex.getCheckedRadioButtonId() == -1) { out.setText("Choose the sex."); return; }
        int w = bitmap.getWidth(), h = bitmap.getHeight();
        int[] argb = new int[w * h];
        bitmap.getPixels(argb, 0, w, 0, 0, w, h);
        long t0 = SystemClock.elapsedRealtimeNanos();
        GreyImage grey = Preprocess.argbToGrey(argb, w, h);
        Preprocess.Result pre = Preprocess.preprocessWithBox(grey, spec);
        GreyImage img = pre.image;
        long t1 = SystemClock.elapsedRealtimeNanos();
        // as predict: the model's hand box is reused when it was found on the image itself (frame "squeeze")
        Quality.Result quality = Quality.assess(grey, new Quality.Source(formatMode[0], formatMode[1], argb, w, h),
            "squeeze".equals(spec.frame) ? pre.box : null);
        long tq = SystemClock.elapsedRealtimeNanos();
        Tensor it = interpreter.getInputTensorFromSignature("image", "serving_default");
        ByteBuffer x;
        if (it.dataType() == DataType.UINT8) {
            x = ByteBuffer.allocateDirect(img.data.length).order(ByteOrder.nativeOrder());
            x.put(img.data);
        } else {
            x = ByteBuffer.allocateDirect(4 * img.data.length).order(ByteOrder.nativeOrder());
            for (byte b : img.data) x.putFloat(b & 0xFF);
        }
        x.rewind();
        Map<String, Object> inputs = new HashMap<String, Object>();
        inputs.put("image", x);
        if (hasSex) inputs.put("sex", new float[][] {{sex.getCheckedRadioButtonId() == 1 ? 1f : 0f}});
        float[][] age = new float[1][1];
        float[][] probs = new float[1][19];
        Map<String, Object> outputs = new HashMap<String, Object>();
        outputs.put("age", age);
        outputs.put("probs", probs);
        float[][] residual = new float[1][1];
        if (featureThreshold != null) outputs.put("feature_residual", residual);
        long t2 = SystemClock.elapsedRealtimeNanos();
        interpreter.runSignature(inputs, outputs, "serving_default");
        long t3 = SystemClock.elapsedRealtimeNanos();
        AgeResult r = new AgeResult(age[0][0], probs[0]);
        quality = quality.withFeatureResidual(residual[0][0], featureThreshold);
        out.setText(String.format(Locale.ROOT, "%s\nmost likely %d-%d y\n%s\nLiteRT %.1f ms, preprocessing %.1f ms, "
            + "input check %.1f ms", quality.markAge(r.label()), r.argmax(), r.argmax() + 1, quality.summary(),
            (t3 - t2) / 1e6, (t1 - t0) / 1e6, (tq - t1) / 1e6));
    }
}
