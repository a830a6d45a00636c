//! Tests of forge-linalg's shared I/O: atomic writes, the memory-mapped safetensors reader and the
//! streaming writer, checked against the reference `safetensors` crate and on damaged files.

use candle_core::{DType, Device, Tensor};
use forge_linalg::io::{
    pt_metadata, write_atomic, write_atomic_with, write_safetensors, SafeTensorsFile,
    SafeTensorsWriter, TensorSpec, TEMP_PREFIX,
};
use forge_linalg::LinalgError;
use std::path::Path;

fn temp_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(TEMP_PREFIX))
        .collect()
}

fn sample() -> Vec<(String, Tensor)> {
    let dev = Device::Cpu;
    let a = Tensor::arange(0f32, 12.0, &dev)
        .unwrap()
        .affine(0.37, -1.5)
        .unwrap()
        .reshape((3, 4))
        .unwrap();
    vec![
        ("z.weight".into(), a.clone()),
        ("a.half".into(), a.to_dtype(DType::F16).unwrap()),
        (
            "m.bf".into(),
            a.to_dtype(DType::BF16).unwrap().reshape(12).unwrap(),
        ),
    ]
}

fn bits_equal(a: &Tensor, b: &Tensor) -> bool {
    a.dtype() == b.dtype()
        && a.dims() == b.dims()
        && a.to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .zip(
                b.to_dtype(DType::F32)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn round_trip_preserves_dtype_values_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    let ts = sample();
    write_safetensors(&p, &ts, Some(pt_metadata())).unwrap();
    let f = SafeTensorsFile::open(&p).unwrap();
    // Written in the order given (not sorted): the file order is the caller's order.
    let names: Vec<&str> = f.names().collect();
    assert_eq!(names, vec!["z.weight", "a.half", "m.bf"]);
    assert_eq!(f.metadata().unwrap()["format"], "pt");
    for (n, t) in &ts {
        let back = f.tensor(n, &Device::Cpu).unwrap();
        assert!(bits_equal(t, &back), "{n} differs");
    }
    assert!(temp_leftovers(dir.path()).is_empty());
}

#[test]
fn reads_files_written_by_the_reference_crate_and_vice_versa() {
    let dir = tempfile::tempdir().unwrap();
    let ts = sample();
    // Reference writer -> our reader.
    let p = dir.path().join("ref.safetensors");
    let bytes = safetensors::serialize(ts.iter().map(|(n, t)| (n.as_str(), t)), None).unwrap();
    std::fs::write(&p, bytes).unwrap();
    let f = SafeTensorsFile::open(&p).unwrap();
    for (n, t) in &ts {
        assert!(bits_equal(t, &f.tensor(n, &Device::Cpu).unwrap()));
    }
    // Our writer -> reference reader.
    let q = dir.path().join("ours.safetensors");
    write_safetensors(&q, &ts, None).unwrap();
    let buf = std::fs::read(&q).unwrap();
    let st = safetensors::SafeTensors::deserialize(&buf).unwrap();
    assert_eq!(st.len(), 3);
    let back = candle_core::safetensors::load_buffer(&buf, &Device::Cpu).unwrap();
    for (n, t) in &ts {
        assert!(bits_equal(t, &back[n]));
    }
}

#[test]
fn truncated_file_is_a_typed_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.safetensors");
    write_safetensors(&p, &sample(), None).unwrap();
    let full = std::fs::read(&p).unwrap();
    for cut in [full.len() - 1, full.len() - 20, 40, 7, 0] {
        std::fs::write(&p, &full[..cut]).unwrap();
        match SafeTensorsFile::open(&p) {
            Err(e @ LinalgError::Corrupt { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("t.safetensors"), "{msg}");
                assert!(
                    msg.contains("truncated") || msg.contains("invalid header"),
                    "{msg}"
                );
            }
            other => panic!("cut at {cut}: expected Corrupt, got {other:?}"),
        }
    }
    // Trailing garbage is also refused.
    let mut long = full.clone();
    long.extend_from_slice(b"junk");
    std::fs::write(&p, &long).unwrap();
    let e = SafeTensorsFile::open(&p).unwrap_err().to_string();
    assert!(e.contains("trailing"), "{e}");
}

#[test]
fn corrupt_header_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.safetensors");
    let write_header = |h: &str, data: usize| {
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(h.as_bytes());
        b.extend(std::iter::repeat_n(0u8, data));
        std::fs::write(&p, b).unwrap();
    };
    // Not JSON.
    write_header("{not json", 0);
    assert!(matches!(
        SafeTensorsFile::open(&p),
        Err(LinalgError::Corrupt { .. })
    ));
    // Offsets do not match the shape (3 f32 need 12 bytes).
    write_header(
        r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
        8,
    );
    assert!(matches!(
        SafeTensorsFile::open(&p),
        Err(LinalgError::Corrupt { .. })
    ));
    // A gap between tensors.
    write_header(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
        12,
    );
    assert!(matches!(
        SafeTensorsFile::open(&p),
        Err(LinalgError::Corrupt { .. })
    ));
    // Absurd header length.
    std::fs::write(&p, u64::MAX.to_le_bytes()).unwrap();
    assert!(matches!(
        SafeTensorsFile::open(&p),
        Err(LinalgError::Corrupt { .. })
    ));
    // Missing file.
    assert!(matches!(
        SafeTensorsFile::open(dir.path().join("absent.safetensors")),
        Err(LinalgError::Io { .. })
    ));
}

#[test]
fn other_dtypes_are_listed_copied_raw_and_refused_as_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ids.safetensors");
    let ids: Vec<u8> = (0i64..4).flat_map(|i| i.to_le_bytes()).collect();
    let specs = vec![
        TensorSpec {
            name: "position_ids".into(),
            dtype: safetensors::Dtype::I64,
            shape: vec![1, 4],
        },
        TensorSpec {
            name: "w".into(),
            dtype: safetensors::Dtype::F32,
            shape: vec![2],
        },
    ];
    let mut w = SafeTensorsWriter::create(&p, specs, None).unwrap();
    w.write_raw(&ids).unwrap();
    w.write(&Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap())
        .unwrap();
    w.finish().unwrap();
    let f = SafeTensorsFile::open(&p).unwrap();
    let (spec, raw) = f.raw("position_ids").unwrap();
    assert_eq!(spec.dtype, safetensors::Dtype::I64);
    assert_eq!(raw, ids.as_slice());
    let e = f.tensor("position_ids", &Device::Cpu).unwrap_err();
    assert!(matches!(e, LinalgError::UnsupportedDtype { .. }), "{e}");
    assert!(e.to_string().contains("position_ids"));
    assert!(matches!(
        f.tensor("nope", &Device::Cpu),
        Err(LinalgError::TensorNotFound { .. })
    ));
}

#[test]
fn streaming_writer_checks_each_tensor_and_leaves_nothing_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.safetensors");
    let spec = |n: &str, shape: Vec<usize>| TensorSpec {
        name: n.into(),
        dtype: safetensors::Dtype::F32,
        shape,
    };
    // Wrong shape: error names the tensor; dropping the writer leaves no file.
    {
        let mut w =
            SafeTensorsWriter::create(&p, vec![spec("a", vec![2]), spec("b", vec![3])], None)
                .unwrap();
        w.write(&Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        let e = w
            .write(&Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains('b'), "{e}");
        let e = w
            .write(&Tensor::zeros(3, DType::F16, &Device::Cpu).unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("F16"), "{e}");
    }
    assert!(!p.exists());
    assert!(temp_leftovers(dir.path()).is_empty());
    // Finishing early is refused, and leaves nothing either.
    let w = SafeTensorsWriter::create(&p, vec![spec("a", vec![2])], None).unwrap();
    assert!(w.finish().is_err());
    assert!(!p.exists());
    assert!(temp_leftovers(dir.path()).is_empty());
    // Duplicate names are refused before anything is created.
    assert!(
        SafeTensorsWriter::create(&p, vec![spec("a", vec![1]), spec("a", vec![1])], None).is_err()
    );
    assert!(temp_leftovers(dir.path()).is_empty());
}

#[test]
fn failed_write_keeps_the_old_file_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("results.json");
    write_atomic(&p, b"old").unwrap();
    let r = write_atomic_with(&p, |w| {
        w.write_all(&[b'x'; 3_000_000])?; // past the write buffer: bytes reach the temp file
        Err(std::io::Error::other("disk full"))
    });
    let e = r.unwrap_err().to_string();
    assert!(e.contains("results.json") && e.contains("disk full"), "{e}");
    assert_eq!(std::fs::read(&p).unwrap(), b"old");
    assert!(temp_leftovers(dir.path()).is_empty());
    // A parent that is a file: typed error, nothing created.
    let bad = p.join("child.txt");
    assert!(matches!(
        write_atomic(&bad, b"x"),
        Err(LinalgError::Io { .. })
    ));
}

#[test]
fn creates_parent_folders_and_shareable_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a/b/c.txt");
    write_atomic(&p, b"hello").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"hello");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
}

#[test]
fn concurrent_writers_to_one_path_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("shared.txt");
    let payloads: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 100_000]).collect();
    std::thread::scope(|s| {
        for pl in &payloads {
            let p = &p;
            s.spawn(move || {
                for _ in 0..5 {
                    write_atomic(p, pl).unwrap();
                }
            });
        }
    });
    let got = std::fs::read(&p).unwrap();
    assert!(payloads.contains(&got), "torn file");
    assert!(temp_leftovers(dir.path()).is_empty());
}

#[test]
fn large_tensor_streams_without_a_whole_file_buffer() {
    // 4 MiB tensor: larger than the write buffer, so the streaming path is exercised.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.safetensors");
    let t = Tensor::arange(0f32, (1 << 20) as f32, &Device::Cpu)
        .unwrap()
        .reshape((1024, 1024))
        .unwrap();
    // A non-contiguous view is written in logical order.
    let tt = t.t().unwrap();
    write_safetensors(&p, &[("t".into(), tt.clone())], None).unwrap();
    let f = SafeTensorsFile::open(&p).unwrap();
    assert!(bits_equal(
        &tt.contiguous().unwrap(),
        &f.tensor("t", &Device::Cpu).unwrap()
    ));
    assert_eq!(f.data_bytes(), 4 << 20);
}

#[test]
fn released_tensors_read_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.safetensors");
    let ts = sample();
    write_safetensors(&p, &ts, None).unwrap();
    let f = SafeTensorsFile::open(&p).unwrap();
    for (n, t) in &ts {
        let a = f.tensor(n, &Device::Cpu).unwrap();
        f.release(n).unwrap();
        let b = f.tensor(n, &Device::Cpu).unwrap();
        assert!(bits_equal(&a, &b) && bits_equal(t, &b));
    }
    assert!(f.release("missing").is_err());
}

/// The host tag of this machine as the writer puts it in its temporary names: read back from a
/// temporary file caught while it exists.
fn own_prefix(dir: &Path) -> String {
    let f = forge_linalg::io::AtomicFile::create(&dir.join("probe.bin")).unwrap();
    let name = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(TEMP_PREFIX))
        .expect("the temporary file exists while writing");
    drop(f);
    let pid = format!("-{}-", std::process::id());
    let cut = name
        .find(&pid)
        .expect("the temporary name holds the writer's pid");
    name[..cut + 1].to_string()
}

#[test]
fn the_next_write_removes_temporary_files_of_dead_writers_only() {
    let d = tempfile::tempdir().unwrap();
    let prefix = own_prefix(d.path());
    assert!(
        temp_leftovers(d.path()).is_empty(),
        "a dropped writer cleaned up"
    );
    // a writer of this machine that was killed (no such pid), one that is alive (pid 1), one of
    // another machine, a fresh file of an old naming, and another program's file
    let dead = format!("{prefix}4294967294-abc");
    let alive = format!("{prefix}1-abc");
    let other_host = format!("{TEMP_PREFIX}00000000-4294967294-abc");
    let legacy = format!("{TEMP_PREFIX}Xy12ab");
    for n in [
        &dead,
        &alive,
        &other_host,
        &legacy,
        &"notes.tmp".to_string(),
    ] {
        std::fs::write(d.path().join(n), b"torn").unwrap();
    }
    write_atomic(&d.path().join("out.json"), b"{}").unwrap();
    let mut left = temp_leftovers(d.path());
    left.sort();
    let mut want = vec![alive, other_host, legacy];
    want.sort();
    assert_eq!(left, want, "only the dead local writer's file is stale");
    assert!(d.path().join("notes.tmp").exists());
    assert_eq!(std::fs::read(d.path().join("out.json")).unwrap(), b"{}");
}
